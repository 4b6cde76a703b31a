-- Same users as integration/env/mariadb.sh (ADR 0002). In a container the
-- clients arrive from the Docker network, hence '%'.
CREATE USER 'freshet_admin'@'%' IDENTIFIED BY 'freshet';
GRANT ALL PRIVILEGES ON *.* TO 'freshet_admin'@'%' WITH GRANT OPTION;
CREATE USER 'freshet_repl'@'%' IDENTIFIED BY 'freshet';
GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'freshet_repl'@'%';
GRANT ALL PRIVILEGES ON freshet_test.* TO 'freshet_repl'@'%';
