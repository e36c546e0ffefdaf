#!/usr/bin/busybox sh
# Runs inside a grain (see tests/tests/runtimes.rs) under Debian's busybox: `httpd` serves
# /var/www on 127.0.0.1:$PORT and `wget` fetches from it, a file in /var is written and read
# back, a child `sh` runs, then one RESULT line says what each step got.
set -eu
mkdir -p /var/www
echo "hello $NONCE" > /var/www/index.html
httpd -f -p "127.0.0.1:$PORT" -h /var/www &
server=$!
tries=0
until got=$(wget -q -O - "http://127.0.0.1:$PORT/index.html"); do
  tries=$((tries + 1))
  [ "$tries" -lt 100 ] || { echo "httpd never answered" >&2; exit 1; }
  usleep 50000
done
kill "$server"
echo -n "$NONCE" > /var/busybox.txt
back=$(cat /var/busybox.txt)
child=$(sh -c 'echo "child $(echo "$NONCE" | rev)"')
echo "RESULT http=$got var=$back child=$child"
