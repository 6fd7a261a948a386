#!/usr/bin/env bash
# Make sure the brokers the tests talk to are up on loopback. Idempotent: a broker already
# listening is left alone. RabbitMQ comes with this machine kind; this only restarts it if it
# stopped (with the command the machine uses to start it).
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
  for _ in $(seq "$3"); do listening "$2" && return 0; sleep 1; done
  echo "brokers: $1 is not listening on 127.0.0.1:$2" >&2
  return 1
}

if ! listening 5672; then
  if rabbitmqctl -q ping >/dev/null 2>&1; then
    # The node runs but its application was stopped (a broker-restart test cut short).
    echo "brokers: starting the RabbitMQ application"
    rabbitmqctl start_app
  elif command -v rabbitmq-server >/dev/null; then
    echo "brokers: starting RabbitMQ"
    rabbitmq-server -detached
  fi
  wait_for RabbitMQ 5672 90
fi
echo "brokers: RabbitMQ on 127.0.0.1:5672"

# Kafka protocol: noida-db (PyPI) serves it from one binary, keeping its data on disk, so that a
# broker-restart test finds its topics and committed offsets again. No Apache Kafka or Redpanda
# build is reachable from this machine's registries; docs/connectors.md says what was tested where.
KAFKA_PORT=9092
BROKER_STATE=${SLUICE_BROKER_STATE:-/var/tmp/sluice-brokers}
if ! listening "$KAFKA_PORT"; then
  if ! command -v noida-db >/dev/null; then
    echo "brokers: installing noida-db (Kafka-protocol broker)"
    python3 -m pip install --quiet --disable-pip-version-check 'noida-db==0.2.3'
  fi
  mkdir -p "$BROKER_STATE"
  echo "brokers: starting Kafka (noida-db) on 127.0.0.1:$KAFKA_PORT"
  # (Its binary warns that it asks for a newer glibc symbol version, weakly; that is harmless.)
  noida-db up --only kafka --kafka-port "$KAFKA_PORT" --host 127.0.0.1 \
    --data-dir "$BROKER_STATE/noida" >"$BROKER_STATE/noida-up.log" 2>&1 ||
    { cat "$BROKER_STATE/noida-up.log" >&2; exit 1; }
  wait_for Kafka "$KAFKA_PORT" 30
fi
echo "brokers: Kafka on 127.0.0.1:$KAFKA_PORT"

# SQS: moto's server speaks the JSON protocol aws-sdk-sqs uses; state is in memory.
SQS_PORT=5000
if ! listening "$SQS_PORT"; then
  if ! command -v moto_server >/dev/null; then
    echo "brokers: installing moto (SQS server)"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
  fi
  mkdir -p "$BROKER_STATE"
  echo "brokers: starting SQS (moto) on 127.0.0.1:$SQS_PORT"
  setsid nohup moto_server -H 127.0.0.1 -p "$SQS_PORT" >"$BROKER_STATE/moto.log" 2>&1 < /dev/null &
  wait_for SQS "$SQS_PORT" 30
fi
echo "brokers: SQS on 127.0.0.1:$SQS_PORT"

# Azure Queue Storage: Azurite from npm (3.35 is the last that runs on Node 20), with its data on
# disk so that a restart keeps the queues.
AZURE_PORT=10001
if ! listening "$AZURE_PORT"; then
  AZURITE="$BROKER_STATE/azurite/node_modules/.bin/azurite-queue"
  if [ ! -x "$AZURITE" ]; then
    echo "brokers: installing Azurite (Azure Queue Storage emulator)"
    mkdir -p "$BROKER_STATE/azurite"
    npm install --silent --no-audit --no-fund --prefix "$BROKER_STATE/azurite" azurite@3.35.0
  fi
  echo "brokers: starting Azure Queue Storage (Azurite) on 127.0.0.1:$AZURE_PORT"
  mkdir -p "$BROKER_STATE/azurite/data"
  setsid nohup "$AZURITE" --queueHost 127.0.0.1 --queuePort "$AZURE_PORT" \
    --location "$BROKER_STATE/azurite/data" --disableTelemetry --skipApiVersionCheck \
    >"$BROKER_STATE/azurite.log" 2>&1 < /dev/null &
  wait_for Azurite "$AZURE_PORT" 30
fi
echo "brokers: Azure Queue Storage on 127.0.0.1:$AZURE_PORT"

# libzmq peers for the ZeroMQ interoperability tests: pyzmq ships libzmq in its wheel.
if ! python3 -c "import zmq" 2>/dev/null; then
  echo "brokers: installing pyzmq (libzmq peers for the ZeroMQ tests)"
  python3 -m pip install --quiet --disable-pip-version-check pyzmq
fi
echo "brokers: pyzmq $(python3 -c 'import zmq; print(zmq.zmq_version())') (libzmq)"

# AMQPS: stunnel (Debian) terminates TLS in front of RabbitMQ, with a CA and certificates made
# here: 5671 checks the server only, 5673 also asks for a client certificate (mutual TLS). The
# tests' `tls:` settings point at the files in $BROKER_STATE/tls.
TLS_DIR="$BROKER_STATE/tls"
stunnel_conf() {
  cat <<CONF
pid = $TLS_DIR/stunnel.pid
foreground = no
output = $TLS_DIR/stunnel.log
[amqps]
accept = 127.0.0.1:5671
connect = 127.0.0.1:5672
cert = $TLS_DIR/server.pem
key = $TLS_DIR/server.key
[amqps-mutual]
accept = 127.0.0.1:5673
connect = 127.0.0.1:5672
cert = $TLS_DIR/server.pem
key = $TLS_DIR/server.key
CAfile = $TLS_DIR/ca.pem
verifyChain = yes
requireCert = yes
CONF
}
# (Re)start when a port is down or the configuration changed.
if ! listening 5671 || ! listening 5673 || [ "$(stunnel_conf)" != "$(cat "$TLS_DIR/stunnel.conf" 2>/dev/null)" ]; then
  command -v stunnel4 >/dev/null || {
    echo "brokers: installing stunnel4 (TLS in front of RabbitMQ)"
    apt-get install -y -qq stunnel4 >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq stunnel4 >/dev/null; }
  }
  mkdir -p "$TLS_DIR"
  if [ ! -f "$TLS_DIR/client.pem" ]; then
    echo "brokers: making a test CA, a server and a client certificate in $TLS_DIR"
    (
      cd "$TLS_DIR"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluice test CA" \
        -keyout ca.key -out ca.pem 2>/dev/null
      for who in server client; do
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$who.key" 2>/dev/null
        openssl req -new -key "$who.key" -subj "/CN=$who" -out "$who.csr" 2>/dev/null
      done
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
      printf 'extendedKeyUsage=clientAuth\n' >client.ext
      for who in server client; do
        openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
          -extfile "$who.ext" -out "$who.pem" 2>/dev/null
      done
    )
  fi
  stunnel_conf >"$TLS_DIR/stunnel.conf"
  if [ -f "$TLS_DIR/stunnel.pid" ]; then
    kill "$(cat "$TLS_DIR/stunnel.pid")" 2>/dev/null || true
    for _ in $(seq 50); do listening 5671 || break; sleep 0.1; done
  fi
  echo "brokers: starting stunnel (AMQPS) on 127.0.0.1:5671 and :5673 (mutual TLS)"
  stunnel4 "$TLS_DIR/stunnel.conf"
  wait_for "AMQPS (stunnel)" 5671 15
  wait_for "AMQPS mutual TLS (stunnel)" 5673 15
fi
echo "brokers: AMQPS on 127.0.0.1:5671 (server TLS) and :5673 (mutual TLS)"

# Azure Queue Storage with Entra ID: a second Azurite queue service that checks bearer tokens
# (`--oauth basic`: audience, issuer and expiry, not the signature), which it does only over HTTPS,
# so it serves the test CA's server certificate. Its own port and data folder. Started through
# node and main.js rather than `azurite-queue`, so the restart test's `pkill -f azurite-queue`
# (aimed at 10001) leaves it alone.
AZURE_OAUTH_PORT=10011
if ! listening "$AZURE_OAUTH_PORT"; then
  for f in server.pem server.key; do
    [ -f "$TLS_DIR/$f" ] || { echo "brokers: $TLS_DIR/$f is missing" >&2; exit 1; }
  done
  echo "brokers: starting Azure Queue Storage with OAuth (Azurite, HTTPS) on 127.0.0.1:$AZURE_OAUTH_PORT"
  mkdir -p "$BROKER_STATE/azurite/data-oauth"
  setsid nohup node "$BROKER_STATE/azurite/node_modules/azurite/dist/src/queue/main.js" \
    --queueHost 127.0.0.1 --queuePort "$AZURE_OAUTH_PORT" \
    --location "$BROKER_STATE/azurite/data-oauth" --disableTelemetry --skipApiVersionCheck \
    --oauth basic --cert "$TLS_DIR/server.pem" --key "$TLS_DIR/server.key" \
    >"$BROKER_STATE/azurite-oauth.log" 2>&1 < /dev/null &
  wait_for "Azurite (OAuth, HTTPS)" "$AZURE_OAUTH_PORT" 30
fi
echo "brokers: Azure Queue Storage with OAuth (HTTPS) on 127.0.0.1:$AZURE_OAUTH_PORT"
