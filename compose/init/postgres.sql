-- Same roles as integration/env/postgres.sh (ADR 0002).
CREATE ROLE freshet_repl LOGIN REPLICATION PASSWORD 'freshet';
GRANT ALL ON DATABASE freshet_test TO freshet_repl;
GRANT ALL ON SCHEMA public TO freshet_repl;
