# Apache Kafka, single node in KRaft mode, from Maven Central jars.
# shellcheck shell=bash

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ENV_HOME/kafka/pom.xml"; }

# kafka_jars fetches the broker's runtime classpath once into a cache
# outside the repository and prints the directory.
kafka_jars() {
	local version cache lib
	version=$(kafka_version)
	cache="${FRESHET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/freshet}"
	lib="$cache/kafka-$version/lib"
	if [ ! -f "$lib/.complete" ]; then
		need_packages java default-jre-headless mvn maven
		log "fetching Apache Kafka $version jars from Maven Central into $lib"
		rm -rf "$lib"
		mkdir -p "$lib"
		mvn -B -q -f "$ENV_HOME/kafka/pom.xml" dependency:copy-dependencies \
			-DincludeScope=runtime -DoutputDirectory="$lib" >&2 ||
			die "mvn could not fetch the Kafka jars"
		touch "$lib/.complete"
	fi
	echo "$lib"
}

kafka_start() {
	local dir=$1 t0 lib port cport sport kdir cluster pid secret
	t0=$(now_ms)
	lib=$(kafka_jars) || exit 1
	port=$(free_port)
	cport=$(free_port)
	while [ "$cport" = "$port" ]; do cport=$(free_port); done
	sport=$(free_port)
	while [ "$sport" = "$port" ] || [ "$sport" = "$cport" ]; do sport=$(free_port); done
	kdir="$dir/kafka"
	mkdir -p "$kdir/data"
	# A second listener with TLS and SASL (PLAIN and SCRAM-SHA-512, user
	# freshet) for the tests of freshet's Kafka security settings; the
	# other tests use the plaintext one. The certificate is self-signed for
	# 127.0.0.1 and its own root (FRESHET_TEST_KAFKA_CA).
	need_packages /usr/bin/openssl openssl
	secret=$(random_secret)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
		-subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$kdir/tls.key" -out "$kdir/tls.crt" >"$kdir/openssl.log" 2>&1 ||
		{ cat "$kdir/openssl.log" >&2; die "openssl could not make the broker certificate"; }
	cat "$kdir/tls.key" "$kdir/tls.crt" >"$kdir/keystore.pem"
	chmod 600 "$kdir/tls.key" "$kdir/keystore.pem"

	cat >"$kdir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
ssl.keystore.type=PEM
ssl.keystore.location=$kdir/keystore.pem
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_freshet="$secret";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$kdir/data
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=9223372036854775807
EOF
	cat >"$kdir/log4j.properties" <<EOF
log4j.rootLogger=WARN,file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$kdir/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF

	cluster=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null) || die "kafka StorageTool random-uuid failed"
	java -Dlog4j.configuration="file:$kdir/log4j.properties" -cp "$lib/*" kafka.tools.StorageTool \
		format -t "$cluster" -c "$kdir/server.properties" \
		--add-scram "SCRAM-SHA-512=[name=freshet,password=$secret]" >"$kdir/format.log" 2>&1 ||
		{ cat "$kdir/format.log" >&2; die "kafka storage format failed"; }

	# A small heap: a test broker, not a production one.
	start_bg root "$kdir/stdout.log" java -Xms256m -Xmx512m -XX:+UseSerialGC \
		-Djava.awt.headless=true -Dlog4j.configuration="file:$kdir/log4j.properties" \
		-cp "$lib/*" kafka.Kafka "$kdir/server.properties"
	pid=$!
	echo "$pid" >"$dir/kafka.pid"

	WAIT_PID=$pid WAIT_SECONDS=90 wait_until "$ENV_PROBE" kafka-ready -brokers "127.0.0.1:$port" ||
		{ tail -n 20 "$kdir/server.log" "$kdir/stdout.log" >&2; die "Kafka did not become ready"; }

	{
		echo "export FRESHET_TEST_KAFKA_BROKERS='127.0.0.1:$port'"
		echo "export FRESHET_TEST_KAFKA_SECURE_BROKERS='127.0.0.1:$sport'"
		echo "export FRESHET_TEST_KAFKA_USER='freshet'"
		echo "export FRESHET_TEST_KAFKA_PASSWORD='$secret'"
		echo "export FRESHET_TEST_KAFKA_CA='$kdir/tls.crt'"
	} >"$dir/kafka.env"
	log "Apache Kafka $(kafka_version) (KRaft) ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
}

# kafka_stop stops the broker of environment $1 with SIGTERM and keeps its
# command line, so kafka_resume starts the same broker (same ports, same
# data) again. For fault-injection tests; teardown still works either way.
kafka_stop() {
	local dir=$1 pid
	pid=$(cat "$dir/kafka.pid" 2>/dev/null) || die "no Kafka in $dir"
	owned_pid "$pid" "$dir" || die "Kafka pid $pid of $dir is not running"
	tr '\0' '\n' <"/proc/$pid/cmdline" >"$dir/kafka.cmdline"
	stop_pid "$pid" TERM 30 "$dir"
	log "Kafka (pid $pid) stopped"
}

# kafka_resume starts the broker kafka_stop stopped and waits until it
# serves again.
kafka_resume() {
	local dir=$1 args pid brokers
	[ -s "$dir/kafka.cmdline" ] || die "no stopped Kafka in $dir"
	mapfile -t args <"$dir/kafka.cmdline"
	start_bg root "$dir/kafka/stdout.log" "${args[@]}"
	pid=$!
	echo "$pid" >"$dir/kafka.pid"
	rm -f "$dir/kafka.cmdline"
	brokers=$(sed -n "s/.*FRESHET_TEST_KAFKA_BROKERS='\(.*\)'.*/\1/p" "$dir/kafka.env")
	WAIT_PID=$pid WAIT_SECONDS=90 wait_until "$dir/bin/envprobe" kafka-ready -brokers "$brokers" ||
		die "Kafka did not come back on $brokers"
	log "Kafka back on $brokers (pid $pid)"
}
