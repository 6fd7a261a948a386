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

# libzmq peers for the ZeroMQ interoperability tests: pyzmq ships libzmq in its wheel.
if ! python3 -c "import zmq" 2>/dev/null; then
  echo "brokers: installing pyzmq (libzmq peers for the ZeroMQ tests)"
  python3 -m pip install --quiet --disable-pip-version-check pyzmq
fi
echo "brokers: pyzmq $(python3 -c 'import zmq; print(zmq.zmq_version())') (libzmq)"
