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
	local dir=$1 t0 lib port cport kdir cluster pid
	t0=$(now_ms)
	lib=$(kafka_jars) || exit 1
	port=$(free_port)
	cport=$(free_port)
	while [ "$cport" = "$port" ]; do cport=$(free_port); done
	kdir="$dir/kafka"
	mkdir -p "$kdir/data"

	cat >"$kdir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
		format -t "$cluster" -c "$kdir/server.properties" >"$kdir/format.log" 2>&1 ||
		{ cat "$kdir/format.log" >&2; die "kafka storage format failed"; }

	# A small heap: a test broker, not a production one.
	start_bg root "$kdir/stdout.log" java -Xms256m -Xmx512m -XX:+UseSerialGC \
		-Djava.awt.headless=true -Dlog4j.configuration="file:$kdir/log4j.properties" \
		-cp "$lib/*" kafka.Kafka "$kdir/server.properties"
	pid=$!
	echo "$pid" >"$dir/kafka.pid"

	WAIT_PID=$pid WAIT_SECONDS=90 wait_until "$ENV_PROBE" kafka-ready -brokers "127.0.0.1:$port" ||
		{ tail -n 20 "$kdir/server.log" "$kdir/stdout.log" >&2; die "Kafka did not become ready"; }

	echo "export FRESHET_TEST_KAFKA_BROKERS='127.0.0.1:$port'" >"$dir/kafka.env"
	log "Apache Kafka $(kafka_version) (KRaft) ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
}
