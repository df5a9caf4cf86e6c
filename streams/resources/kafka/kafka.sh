#!/usr/bin/env bash
# ops/kafka/kafka.sh — a real single-node Apache Kafka broker (KRaft, combined
# broker+controller) on loopback, without Docker.
#
#   kafka.sh fetch    resolve the broker jars from Maven Central (no-op when cached)
#   kafka.sh start    fetch, write config, format storage once, start, wait until it answers
#   kafka.sh stop     stop the broker this script started (by its recorded pid)
#   kafka.sh status   exit 0 if running (prints pid, bootstrap and version), 1 otherwise
#   kafka.sh fetched  exit 0 if the jars are already cached (start will not download)
#   kafka.sh logs     tail the broker log (`logs -f` follows; LINES=n for more)
#   kafka.sh env      print the resolved paths and settings
#
# It owns: the jar cache, the broker's config/data/log/pid files and the broker
# process it started. It does not create topics (streams/infra/kafka_admin.py
# does, from topology.yaml) and never touches a broker it did not start.
#
# Environment (all optional):
#   TWINLEDGER_KAFKA_PORT             client listener port           (39092)
#   TWINLEDGER_KAFKA_CONTROLLER_PORT  KRaft controller port          (client port + 1)
#   TWINLEDGER_CACHE_DIR              jar cache root                 (~/.cache/twinledger)
#   TWINLEDGER_DATA_DIR               data root; relative paths are taken from
#                                     the repository root            (<repo>/.data)
#   TWINLEDGER_KAFKA_HEAP             JVM heap                       (-Xms256m -Xmx1g)
#   TWINLEDGER_KAFKA_START_TIMEOUT    seconds to wait for the broker (60)
#   TWINLEDGER_KAFKA_VERSION          try another version than the pinned one
#
# Version pin (ops/kafka/pom.xml <kafka.version>, the only place it is set):
# Apache Kafka 4.3.1, the current release Maven Central resolves whole (4.4.0
# cannot be resolved: kafka-tools-api-4.4.0.jar is missing there). Checked with
# ops/kafka/client_compat.py (aiokafka producer + consumer group with commits +
# admin create_topics, confluent-kafka Producer/Consumer/AdminClient, a
# faust-streaming worker with agent and table; `make kafka-compat`):
#   4.3.1 + aiokafka 0.14 / confluent-kafka 2.16 / faust 0.15.3   all pass
#   4.3.1 + aiokafka 0.13 / confluent-kafka 2.6  / faust 0.12.0   all pass
#   3.9.2 + aiokafka 0.14 / confluent-kafka 2.16 / faust 0.15.3   all pass
#   3.9.2 + aiokafka 0.13 / confluent-kafka 2.6  / faust 0.12.0   all pass
#   4.3.1 + aiokafka 0.12 / faust 0.11.3: the faust worker dies at start,
#     "KafkaConnectionError: Connection ... closed"; broker log: "Received request
#     for api with key 19 (CreateTopics) and unsupported version 1". Kafka 4.0
#     removed old protocol versions (KIP-896) and faust (also 0.15.3) sends a
#     hard-coded CreateTopics v1 whenever aiokafka < 0.13 is installed.
#   aiokafka 0.13 + faust 0.11.3 (any broker): the faust worker dies at start,
#     "AIOKafkaProducer.__init__() got an unexpected keyword argument
#     'api_version'"; faust 0.12.0 is the first that speaks aiokafka 0.13.
# Hence the floors of pyproject.toml: aiokafka>=0.13, faust-streaming>=0.12,
# confluent-kafka>=2.6; with them the supported brokers are 3.9.x and 4.x.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# The checkout this script runs from: ops/kafka/kafka.sh is a link to
# streams/resources/kafka/kafka.sh, so look upwards for pyproject.toml. An
# installed copy (site-packages) has none: relative paths are then taken from the
# cwd (the Python side always passes absolute ones).
find_repo_root() {
    local d=$SCRIPT_DIR
    while [[ "$d" != "/" ]]; do
        [[ -f "$d/pyproject.toml" && -d "$d/streams/resources" ]] && { printf '%s\n' "$d"; return; }
        d=$(dirname -- "$d")
    done
    pwd
}
REPO_ROOT=$(find_repo_root)
POM="$SCRIPT_DIR/pom.xml"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pinned_version() {
    sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM" | head -n 1
}

abs_from_repo() {
    # Relative paths in the environment mean "relative to the repository root",
    # so the script and the Python API agree whatever the caller's cwd is.
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$REPO_ROOT/${1#./}" ;;
    esac
}

KAFKA_VERSION=${TWINLEDGER_KAFKA_VERSION:-$(pinned_version)}
[[ -n "$KAFKA_VERSION" ]] || die "cannot read <kafka.version> from $POM"
KAFKA_MAJOR=${KAFKA_VERSION%%.*}
CACHE_ROOT=${TWINLEDGER_CACHE_DIR:-${HOME:-/tmp}/.cache/twinledger}
CACHE_ROOT=$(abs_from_repo "$CACHE_ROOT")
VERSION_DIR="$CACHE_ROOT/kafka/$KAFKA_VERSION"
LIBS_DIR="$VERSION_DIR/libs"
DATA_ROOT=$(abs_from_repo "${TWINLEDGER_DATA_DIR:-.data}")
KAFKA_DIR="$DATA_ROOT/kafka"
CONF_DIR="$KAFKA_DIR/config"
LOG_DIR="$KAFKA_DIR/logs"
STORAGE_DIR="$KAFKA_DIR/storage"
PID_FILE="$KAFKA_DIR/kafka.pid"
VERSION_FILE="$KAFKA_DIR/kafka.version"  # the version the running broker was started with
OUT_FILE="$LOG_DIR/kafka.out"
PORT=${TWINLEDGER_KAFKA_PORT:-39092}
CONTROLLER_PORT=${TWINLEDGER_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
HEAP=${TWINLEDGER_KAFKA_HEAP:--Xms256m -Xmx1g}
START_TIMEOUT=${TWINLEDGER_KAFKA_START_TIMEOUT:-60}
HOST=127.0.0.1
# A fixed cluster id: base64url of the 16 bytes "twinledger-local". One local
# cluster per data dir, so nothing is gained by a random one.
CLUSTER_ID=dHdpbmxlZGdlci1sb2NhbA
MAIN_CLASS=kafka.Kafka

[[ "$PORT" =~ ^[0-9]+$ && "$CONTROLLER_PORT" =~ ^[0-9]+$ ]] || die "ports must be numbers"
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "client and controller port must differ"

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH ($2)"; }

# ---------------------------------------------------------------- fetch

cmd_fetch() {
    if [[ -f "$LIBS_DIR/.complete" ]]; then
        return 0
    fi
    need mvn "install Maven 3.6+, e.g. apt-get install maven"
    need java "install a JDK 17+, e.g. apt-get install openjdk-17-jdk-headless"
    local profile=kafka3
    [[ "$KAFKA_MAJOR" -ge 4 ]] && profile=kafka4
    mkdir -p "$VERSION_DIR"
    local tmp="$VERSION_DIR/libs.tmp.$$" mvn_log="$VERSION_DIR/fetch.log"
    rm -rf "$tmp"
    log "downloading Apache Kafka $KAFKA_VERSION (about 45 jars, 45 MB) with Maven into $LIBS_DIR"
    local start=$SECONDS
    # -B: plain output. The full Maven output goes to the log only; on a terminal
    # one line counts the jars as they arrive, in a log there is nothing until the
    # summary line.
    local rc=0
    mvn -B -Dstyle.color=never -f "$POM" -P "$profile" package \
        -Dkafka.version="$KAFKA_VERSION" \
        -Dlibs.dir="$tmp" -Dbuild.dir="$VERSION_DIR/build" >"$mvn_log" 2>&1 &
    local mvn_pid=$!
    if [[ -t 2 ]]; then
        while kill -0 "$mvn_pid" 2>/dev/null; do
            printf '\rkafka.sh:   %s jars downloaded, %s s ' \
                "$(grep -c 'Downloaded from .*\.jar' "$mvn_log" 2>/dev/null || true)" \
                "$((SECONDS - start))" >&2
            sleep 1
        done
        printf '\r\033[K' >&2
    fi
    wait "$mvn_pid" || rc=$?
    if [[ "$rc" -ne 0 ]] || ! grep -q 'BUILD SUCCESS' "$mvn_log"; then
        tail -n 30 "$mvn_log" >&2 || true
        rm -rf "$tmp"
        die "Maven could not resolve Kafka $KAFKA_VERSION (full log: $mvn_log)"
    fi
    local n
    n=$(find "$tmp" -name '*.jar' | wc -l)
    [[ "$n" -gt 10 && -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] \
        || die "Maven finished but $tmp holds only $n jars"
    rm -rf "$LIBS_DIR" "$VERSION_DIR/build"
    mv "$tmp" "$LIBS_DIR"
    touch "$LIBS_DIR/.complete"
    log "fetched $n jars ($(du -sh "$LIBS_DIR" | cut -f1)) in $((SECONDS - start)) s (Maven log: $mvn_log)"
}

cmd_fetched() {
    [[ -f "$LIBS_DIR/.complete" ]]
}

# ---------------------------------------------------------------- config

write_config() {
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$STORAGE_DIR"
    cat >"$CONF_DIR/server.properties" <<EOF
# Generated by ops/kafka/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$STORAGE_DIR

# Topics come from topology.yaml only; a typo must fail, not create a topic.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Single node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests and workers join groups constantly; do not wait 3 s for more members.
group.initial.rebalance.delay.ms=0

# Development retention: a few days or 1 GiB per partition, whichever first.
log.retention.hours=72
log.retention.bytes=1073741824
log.segment.bytes=134217728
log.retention.check.interval.ms=300000
num.network.threads=2
num.io.threads=4
EOF
    if [[ "$KAFKA_MAJOR" -ge 4 ]]; then
        cat >"$CONF_DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $LOG_DIR/server.log
appender.file.filePattern = $LOG_DIR/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
    else
        cat >"$CONF_DIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_DIR/server.log
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
    fi
}

log_opts() {
    if [[ "$KAFKA_MAJOR" -ge 4 ]]; then
        printf '%s\n' "-Dlog4j2.configurationFile=$CONF_DIR/log4j2.properties"
    else
        printf '%s\n' "-Dlog4j.configuration=file:$CONF_DIR/log4j.properties"
    fi
}

format_storage() {
    if [[ -f "$STORAGE_DIR/meta.properties" ]]; then
        return 0
    fi
    log "formatting KRaft storage in $STORAGE_DIR (cluster id $CLUSTER_ID)"
    local opts
    opts=$(log_opts)
    if ! java "$opts" -cp "$LIBS_DIR/*" kafka.tools.StorageTool format \
        -t "$CLUSTER_ID" -c "$CONF_DIR/server.properties" --ignore-formatted \
        >"$LOG_DIR/format.log" 2>&1; then
        cat "$LOG_DIR/format.log" >&2
        die "formatting storage failed"
    fi
}

# ---------------------------------------------------------------- process

recorded_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# True when the recorded pid is alive AND is our broker: a recycled pid of some
# other process must never be mistaken for it (or killed by `stop`).
is_running() {
    local pid
    pid=$(recorded_pid) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$MAIN_CLASS $CONF_DIR/server.properties"
}

# Readiness, spoken in the Kafka protocol over bash's /dev/tcp (no client needed):
#  1. Metadata v4 lists at least one broker. A KRaft broker that is still
#     fenced or catching up lists none, and creating a topic would fail with
#     "replication factor larger than available brokers".
#  2. FindCoordinator v1 for a group returns error 0. The first such request
#     creates __consumer_offsets; until it is loaded, every client's first group
#     join logs GroupCoordinatorNotAvailable/CoordinatorLoadInProgress errors.
#  3. InitProducerId v1 (no transactional id) returns error 0. Until the broker
#     holds its first block of producer ids, idempotent producers (librdkafka's
#     enable.idempotence) log "Coordinator load in progress" and retry.
# All three versions are in the supported range of 3.x and 4.x brokers (KIP-896).
probe() {
    local port=$1
    # shellcheck disable=SC2016  # the inner script expands its own variables
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        # Metadata: size=23 | api_key=3 | version=4 | correlation_id=7 | client_id
        # "kafka.sh" | topics: empty array | allow_auto_topic_creation=false
        printf "\x00\x00\x00\x17\x00\x03\x00\x04\x00\x00\x00\x07\x00\x08kafka.sh\x00\x00\x00\x00\x00" >&3
        # size(4) correlation_id(4) throttle_time_ms(4) brokers_count(4)
        read -r -a b <<<"$(head -c 16 <&3 | od -An -tu1 -v | tr "\n" " ")"
        [[ ${#b[@]} -eq 16 && ${b[7]} -eq 7 ]] || exit 1
        size=$(( (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3] ))
        n=$(( (b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15] ))
        [[ $n -ge 1 ]] || exit 1
        head -c $((size - 12)) <&3 >/dev/null  # rest of the response
        # FindCoordinator: size=29 | api_key=10 | version=1 | correlation_id=8 |
        # client_id "kafka.sh" | key "kafka.sh" | key_type=0 (group)
        printf "\x00\x00\x00\x1d\x00\x0a\x00\x01\x00\x00\x00\x08\x00\x08kafka.sh\x00\x08kafka.sh\x00" >&3
        # size(4) correlation_id(4) throttle_time_ms(4) error_code(2)
        read -r -a c <<<"$(head -c 14 <&3 | od -An -tu1 -v | tr "\n" " ")"
        [[ ${#c[@]} -eq 14 && ${c[7]} -eq 8 && ${c[12]} -eq 0 && ${c[13]} -eq 0 ]] || exit 1
        size=$(( (c[0] << 24) | (c[1] << 16) | (c[2] << 8) | c[3] ))
        head -c $((size - 10)) <&3 >/dev/null
        # InitProducerId: size=24 | api_key=22 | version=1 | correlation_id=9 |
        # client_id "kafka.sh" | transactional_id null | transaction_timeout_ms=60000
        printf "\x00\x00\x00\x18\x00\x16\x00\x01\x00\x00\x00\x09\x00\x08kafka.sh\xff\xff\x00\x00\xea\x60" >&3
        # size(4) correlation_id(4) throttle_time_ms(4) error_code(2)
        read -r -a d <<<"$(head -c 14 <&3 | od -An -tu1 -v | tr "\n" " ")"
        [[ ${#d[@]} -eq 14 && ${d[7]} -eq 9 && ${d[12]} -eq 0 && ${d[13]} -eq 0 ]]
    ' "$HOST" "$port" 2>/dev/null
}

port_in_use() {
    # shellcheck disable=SC2016  # expanded by the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

log_tail() {
    local f
    for f in "$LOG_DIR/server.log" "$OUT_FILE"; do
        if [[ -s "$f" ]]; then
            log "last lines of $f:"
            tail -n "${1:-40}" "$f" >&2
        fi
    done
}

cmd_start() {
    cmd_fetch
    need java "install a JDK 17+"
    mkdir -p "$KAFKA_DIR"
    # Serialize concurrent starts (two test sessions, a test and a CLI user).
    exec 9>"$KAFKA_DIR/.lock"
    flock -w 120 9 || die "another kafka.sh holds $KAFKA_DIR/.lock"

    if is_running; then
        local pid
        pid=$(recorded_pid)
        if probe "$PORT"; then
            log "already running (pid $pid) on $HOST:$PORT"
            return 0
        fi
        log "pid $pid is running but not (yet) answering on $HOST:$PORT; waiting"
    else
        rm -f "$PID_FILE"
        local p
        for p in "$PORT" "$CONTROLLER_PORT"; do
            ! port_in_use "$p" || die "$HOST:$p is in use by another process; \
set TWINLEDGER_KAFKA_PORT / TWINLEDGER_KAFKA_CONTROLLER_PORT"
        done
        write_config
        format_storage
        log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT)"
        printf '%s\n' "$KAFKA_VERSION" >"$VERSION_FILE"
        local opts heap_opts
        opts=$(log_opts)
        read -r -a heap_opts <<<"$HEAP"
        : >"$OUT_FILE"
        # setsid: the broker must outlive the shell/test session that started it
        # and not receive its Ctrl-C. The inner shell writes its own pid and then
        # exec's java, so the pid file names the JVM itself.
        # shellcheck disable=SC2016  # $$ must be the inner shell's pid
        setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
            java "${heap_opts[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -Djava.awt.headless=true "$opts" -Dkafka.logs.dir="$LOG_DIR" \
            -cp "$LIBS_DIR/*" "$MAIN_CLASS" "$CONF_DIR/server.properties" \
            </dev/null >>"$OUT_FILE" 2>&1 9>&- &
        local _
        for _ in $(seq 50); do
            [[ -s "$PID_FILE" ]] && break
            sleep 0.1
        done
    fi

    local start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! is_running; then
            log_tail 60
            rm -f "$PID_FILE"
            die "the broker exited during startup (logs above, all in $LOG_DIR)"
        fi
        if probe "$PORT"; then
            log "ready: bootstrap $HOST:$PORT (pid $(recorded_pid), $((SECONDS - start)) s)"
            return 0
        fi
        sleep 0.5
    done
    log_tail 60
    die "the broker did not answer on $HOST:$PORT within ${START_TIMEOUT} s; \
it is still running (pid $(recorded_pid)); see $LOG_DIR or run: $0 stop"
}

cmd_stop() {
    local pid
    if ! pid=$(recorded_pid); then
        log "not running (no pid file)"
        return 0
    fi
    if ! is_running; then
        log "pid $pid is not our broker any more; removing stale pid file"
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local _
    # Controlled shutdown of a single combined node normally takes a few seconds.
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after 30 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

# The version of the RUNNING broker (it may predate a change of the pin): the
# version file written at start, else the jar directory on its command line.
running_version() {
    local pid v=""
    pid=$(recorded_pid) || true
    [[ -s "$VERSION_FILE" ]] && v=$(<"$VERSION_FILE")
    if [[ -z "$v" && -n "$pid" && -r "/proc/$pid/cmdline" ]]; then
        v=$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's:.*/kafka/\([^/]*\)/libs/\*$:\1:p' | head -n 1)
    fi
    printf '%s\n' "${v:-$KAFKA_VERSION}"
}

cmd_status() {
    if is_running; then
        if probe "$PORT"; then
            printf 'running pid=%s bootstrap=%s:%s version=%s\n' \
                "$(recorded_pid)" "$HOST" "$PORT" "$(running_version)"
        else
            printf 'starting pid=%s bootstrap=%s:%s version=%s (not answering yet)\n' \
                "$(recorded_pid)" "$HOST" "$PORT" "$(running_version)"
        fi
        return 0
    fi
    printf 'stopped\n'
    return 1
}

cmd_logs() {
    local f="$LOG_DIR/server.log"
    [[ -f "$f" ]] || die "no log yet at $f"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n "${LINES:-100}" -F "$f"
    fi
    tail -n "${LINES:-100}" "$f"
}

cmd_env() {
    cat <<EOF
KAFKA_VERSION=$KAFKA_VERSION
BOOTSTRAP=$HOST:$PORT
CONTROLLER=$HOST:$CONTROLLER_PORT
LIBS_DIR=$LIBS_DIR
KAFKA_DIR=$KAFKA_DIR
PID_FILE=$PID_FILE
SERVER_LOG=$LOG_DIR/server.log
EOF
}

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    fetched) cmd_fetched ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    logs) shift; cmd_logs "$@" ;;
    env) cmd_env ;;
    *) usage ;;
esac
