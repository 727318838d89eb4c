#!/usr/bin/env bash
# shellcheck disable=SC2317 # start_* and cleanup are called indirectly
# Weir benchmark harness: one nginx backend, three single-worker proxies in
# front of it (nginx, HAProxy, Weir), each loaded with wrk over loopback in
# the same run. See bench/README.md for what it measures and how to read it.
#
# Usage: bench/run.sh [--only NAME[,NAME...]]...
#        NAME: weir weir_lua nginx haproxy weir_policy nginx_lua router changes
# Env:   DURATION=10s CONNECTIONS=50 THREADS=1 WARMUP=3s TASKSET=0 ROUNDS=1
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: bench/run.sh [--only NAME[,NAME...]]...

Benchmarks Weir against nginx and HAProxy as reverse proxies in front of one
nginx backend, and runs bench/router_scale.c when it exists.

  --only NAME    run only these (repeatable, or comma-separated):
                 weir, weir_lua (a no-op plugin in every phase), nginx, haproxy,
                 weir_policy and nginx_lua (JWT + Redis rate limit + rewrite on
                 the route, with Weir's bundled plugins and with nginx+Lua),
                 router (the router_scale micro-benchmark),
                 changes (bench/admin_changes.py; only when named)
  -h, --help     this text

Environment:
  DURATION=10s     measured wrk run        WARMUP=3s   wrk warm-up before it
  CONNECTIONS=50   wrk connections         THREADS=1   wrk threads
  ROUNDS=1         rounds (proxies in rotating order); the table gives medians
  TASKSET=1        pin the proxy to CPU $PROXY_CPU (0) and wrk and the backend
                   to CPU $LOAD_CPU (1); nothing is pinned by default
EOF
}

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
TASKSET=${TASKSET:-0}
ROUNDS=${ROUNDS:-1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

BACKEND_PORT=18080
NGINX_PORT=18081
HAPROXY_PORT=18082
WEIR_PORT=18083
WEIR_ADMIN_PORT=18084
REDIS_PORT=18085
NGINX_LUA_PORT=18086
WEIR_TLS_PORT=18087
NGINX_TLS_PORT=18088
HAPROXY_TLS_PORT=18089
SCHEME=http # of the proxy being loaded: https for the *_tls ones
BACKEND_BODY="hello from backend"
ALL_PROXIES=(nginx haproxy weir weir_lua nginx_lua weir_policy nginx_tls haproxy_tls weir_tls)
# The policy pair (weir_policy, nginx_lua) is sent GET $POLICY_PATH with a JWT;
# both rewrite it to /v2/... (the backend answers 404 to an unrewritten /api/).
POLICY_PATH=/api/items/7
POLICY_JWT_KEY=bench-issuer
POLICY_JWT_SECRET=bench-secret-0123456789abcdef0123456789

# ---------------------------------------------------------------- arguments
only=()
while (($# > 0)); do
	case $1 in
	--only) [[ $# -ge 2 ]] || { echo "run.sh: --only needs a value" >&2; exit 2; }
		IFS=, read -r -a more <<<"$2"; only+=("${more[@]}"); shift 2 ;;
	--only=*) IFS=, read -r -a more <<<"${1#--only=}"; only+=("${more[@]}"); shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
done
for n in "${only[@]}"; do
	case $n in
	weir | weir_lua | nginx | haproxy | weir_policy | nginx_lua | weir_tls | nginx_tls | haproxy_tls | \
		router | router_scale | changes) ;;
	*) echo "run.sh: --only: unknown name '$n' (weir, weir_lua, nginx, haproxy, weir_policy, nginx_lua, weir_tls, nginx_tls, haproxy_tls, router, changes)" >&2; exit 2 ;;
	esac
done
for v in ROUNDS CONNECTIONS THREADS PROXY_CPU LOAD_CPU; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a number, not '${!v}'" >&2; exit 2; }
done
((ROUNDS >= 1)) || { echo "run.sh: ROUNDS must be at least 1" >&2; exit 2; }
selected() { # selected NAME: true when NAME is to be run
	((${#only[@]} == 0)) && return 0
	local n
	for n in "${only[@]}"; do
		[[ $n == "$1" || ($1 == router && $n == router_scale) ]] && return 0
	done
	return 1
}
proxies=()
for p in "${ALL_PROXIES[@]}"; do selected "$p" && proxies+=("$p"); done

# ------------------------------------------------------------- environment
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_missing() {
	local missing=() cmd pkg
	for cmd in wrk:wrk nginx:nginx haproxy:haproxy curl:curl taskset:util-linux pgrep:procps \
		redis-server:redis-server redis-cli:redis-tools openssl:openssl; do
		pkg=${cmd#*:}; cmd=${cmd%%:*}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	# nginx+Lua for the policy peer: Debian's lua module, its Redis client and
	# SHA-256 (FFI to OpenSSL), lua-cjson
	for pkg in libnginx-mod-http-lua lua-nginx-redis lua-nginx-string lua-cjson; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	echo "== installing: ${missing[*]}"
	# Debian's nginx and haproxy packages start their system service on
	# install; policy-rc.d (exit 101) stops that, so nothing listens on :80.
	local policy=/usr/sbin/policy-rc.d added_policy=0
	if [[ ! -e $policy ]]; then
		as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
		added_policy=1
	fi
	local rc=0
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
	((rc == 0)) && { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || rc=$?; }
	((added_policy)) && as_root rm -f "$policy"
	((rc == 0)) || { echo "run.sh: apt-get failed ($rc)" >&2; exit 1; }
}
install_missing

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
chmod 755 "$tmp" # nginx workers drop to 'nobody' when started as root
started=()       # pids this script started (each also owns its descendants)

descendants() { # descendants PID: PID's children, grandchildren, ...
	local c
	for c in $(pgrep -P "$1" 2>/dev/null || true); do
		echo "$c"
		descendants "$c"
	done
}
alive() { # alive PID: running and not a zombie
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ ${st:0:1} != Z ]]
}
any_alive() { # any_alive PID...: true while one of them runs
	local p
	for p in "$@"; do alive "$p" && return 0; done
	return 1
}
stop_pid() { # stop_pid PID: stop PID and its descendants, and reap PID
	local pid=$1 all i p
	[[ -n $pid ]] || return 0
	mapfile -t all < <(echo "$pid"; descendants "$pid")
	# TERM the top process alone first, so that it reaps its own children
	# (an nginx master its workers); then TERM, and at last KILL, stragglers.
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do any_alive "${all[@]}" || break; sleep 0.1; done
	if any_alive "${all[@]}"; then
		kill -TERM "${all[@]}" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do any_alive "${all[@]}" || break; sleep 0.1; done
		for p in "${all[@]}"; do
			if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
		done
	fi
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}
forget() { # forget PID: drop PID from the list of processes to clean up
	local keep=() s
	for s in "${started[@]}"; do [[ $s == "$1" ]] || keep+=("$s"); done
	started=("${keep[@]}")
}
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${started[@]}"; do stop_pid "$p"; done
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pin() { # pin CPU CMD...: run CMD, pinned to CPU when TASKSET=1
	local cpu=$1
	shift
	if [[ $TASKSET == 1 ]]; then taskset -c "$cpu" "$@"; else "$@"; fi
}
# spawn CPU LOG CMD...: start CMD in the background with its output in LOG,
# pinned to CPU when TASKSET=1; sets spawned_pid, which is CMD's own pid (a
# simple command run with & is exec'd by the forked child; taskset execs too).
spawn() {
	local cpu=$1 log=$2
	shift 2
	[[ $TASKSET == 1 ]] && set -- taskset -c "$cpu" "$@"
	"$@" >"$log" 2>&1 &
	spawned_pid=$!
	started+=("$spawned_pid")
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=()
((${#proxies[@]} == 0)) || ports+=("$BACKEND_PORT")
selected nginx && ports+=("$NGINX_PORT")
selected haproxy && ports+=("$HAPROXY_PORT")
{ selected weir || selected weir_lua || selected weir_policy; } && ports+=("$WEIR_PORT" "$WEIR_ADMIN_PORT")
{ selected weir_policy || selected nginx_lua; } && ports+=("$REDIS_PORT")
selected nginx_lua && ports+=("$NGINX_LUA_PORT")
selected weir_tls && ports+=("$WEIR_TLS_PORT" "$WEIR_ADMIN_PORT")
selected nginx_tls && ports+=("$NGINX_TLS_PORT")
selected haproxy_tls && ports+=("$HAPROXY_TLS_PORT")
for port in "${ports[@]}"; do
	if port_busy "$port"; then
		echo "run.sh: 127.0.0.1:$port is already in use; stop whatever listens there" >&2
		exit 1
	fi
done

# wait_ready NAME PID PORT [PATH [HEADER]]: true once http://127.0.0.1:PORT/PATH
# answers with the backend's body (10 s at most; gives up early if PID exits).
wait_ready() {
	local name=$1 pid=$2 port=$3 path=${4:-/} i body
	local hdr=()
	[[ -n ${5:-} ]] && hdr=(-H "$5")
	for ((i = 0; i < 100; i++)); do
		if ! alive "$pid"; then
			echo "$name: exited during start-up" >&2
			return 1
		fi
		if body=$(curl -sSk --max-time 1 "${hdr[@]}" "$SCHEME://127.0.0.1:$port$path" 2>/dev/null) &&
			[[ $body == "$BACKEND_BODY" ]]; then
			return 0
		fi
		sleep 0.1
	done
	echo "$name: no '$BACKEND_BODY' from 127.0.0.1:$port$path after 10 s (last answer: '${body:-none}')" >&2
	return 1
}

show_log() { # show_log FILE: its last lines, indented, on stderr
	[[ -s $1 ]] && tail -n 15 "$1" | sed 's/^/    | /' >&2
	return 0
}

nginx_common() { # nginx_common DIR: paths an unprivileged nginx needs
	cat <<EOF
daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
EOF
}
nginx_temp_paths() {
	cat <<EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

# ----------------------------------------------------------------- backend
start_backend() {
	local d=$tmp/backend
	mkdir -p "$d"
	{
		nginx_common "$d"
		cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$d")
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / { return 200 "$BACKEND_BODY\n"; }
        location /api/ { return 404 "not rewritten\n"; }
    }
}
EOF
	} >"$d/nginx.conf"
	spawn "$LOAD_CPU" "$d/stdout.log" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
	backend_pid=$spawned_pid
	if ! wait_ready backend "$backend_pid" "$BACKEND_PORT"; then
		show_log "$d/error.log"
		show_log "$d/stdout.log"
		echo "run.sh: the backend did not start" >&2
		exit 1
	fi
}

# ----------------------------------------------------------------- proxies
# Each start_X sets proxy_pid and proxy_log, or returns non-zero. A server's plain and TLS rows
# (nginx and nginx_tls, ...) start through one function and one config, whose TLS part (section
# "TLS termination" below) is only added with "tls": each TLS piece is a string that starts with
# its own newline and is empty otherwise, so the plain config is as it was written without TLS.
start_nginx() { # start_nginx [tls]
	local name=nginx port=$NGINX_PORT listen_ssl='' http_tls='' server_tls=''
	if [[ ${1:-} == tls ]]; then
		tls_cert || return 1
		name=nginx_tls port=$NGINX_TLS_PORT listen_ssl=' ssl'
		http_tls="
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;"
		server_tls="
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;"
	fi
	local d=$tmp/$name
	mkdir -p "$d"
	{
		nginx_common "$d"
		cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$d")
    keepalive_requests 1000000;
    keepalive_timeout 300s;$http_tls
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$port$listen_ssl;$server_tls
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	} >"$d/nginx.conf"
	proxy_log=$d/error.log
	spawn "$PROXY_CPU" "$d/stdout.log" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
	proxy_pid=$spawned_pid
	wait_ready "$name" "$proxy_pid" "$port"
}

start_haproxy() { # start_haproxy [tls]
	local name=haproxy port=$HAPROXY_PORT global_tls='' bind_tls=''
	if [[ ${1:-} == tls ]]; then
		tls_cert || return 1
		name=haproxy_tls port=$HAPROXY_TLS_PORT
		global_tls="
    ssl-default-bind-options ssl-min-ver TLSv1.2"
		bind_tls=" ssl crt $tmp/tls/combined.pem"
	fi
	local d=$tmp/$name
	mkdir -p "$d"
	# maxconn 4096 needs ~8200 descriptors; HAProxy refuses to start when
	# the hard limit is below what maxconn needs, so stay under it.
	local hard maxconn=4096
	hard=$(ulimit -Hn)
	if [[ $hard != unlimited ]] && ((hard / 2 - 100 < maxconn)); then
		maxconn=$((hard / 2 - 100))
	fi
	cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $maxconn$global_tls

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 10s
    timeout http-keep-alive 300s

frontend bench
    bind 127.0.0.1:$port$bind_tls
    default_backend backend

backend backend
    server backend 127.0.0.1:$BACKEND_PORT
EOF
	proxy_log=$d/haproxy.log
	spawn "$PROXY_CPU" "$proxy_log" haproxy -db -f "$d/haproxy.cfg"
	proxy_pid=$spawned_pid
	wait_ready "$name" "$proxy_pid" "$port"
}

build_weir() { # (re)builds Weir through setup.sh, which only rebuilds what changed
	local log=$tmp/weir-build.log
	echo "== building weir with ./setup.sh build (log: $log)"
	if ! ./setup.sh build >"$log" 2>&1; then
		echo "weir: build failed; last lines:" >&2
		show_log "$log"
		return 1
	fi
	WEIR_BIN=$(sed -n 's/^setup: built //p' "$log")
	[[ -x "$WEIR_BIN" ]] || { echo "weir: the build made no binary" >&2; return 1; }
}

# start_weir [lua | tls]: with "lua", a no-op plugin runs in every phase of the route; with
# "tls", the listener terminates TLS
start_weir() {
	local name=weir port=$WEIR_PORT listen_ssl='' settings='' plugins=''
	if [[ ${1:-} == tls ]]; then
		tls_cert || return 1
		name=weir_tls port=$WEIR_TLS_PORT listen_ssl=' ssl'
		settings=',
         "ssl_cert":"'$tmp/tls/cert.pem'","ssl_cert_key":"'$tmp/tls/key.pem'"'
	fi
	build_weir || return 1
	local d=$tmp/weir${1:+_$1}
	mkdir -p "$d"
	if [[ ${1:-} == lua ]]; then
		mkdir -p "$d/root/plugins/noop" "$d/root/schemas/plugins"
		cat >"$d/root/plugins/noop/handler.lua" <<'EOF'
local Noop = { PRIORITY = 1000, VERSION = "1.0" }
function Noop:rewrite(conf) end
function Noop:access(conf) end
function Noop:response(conf) end
function Noop:log(conf) end
return Noop
EOF
		echo '{"type": "object"}' >"$d/root/schemas/plugins/noop.json"
		settings=',"plugins":["bundled","noop"],"plugin_paths":["root"]'
		plugins=',"plugins":[{"name":"noop","route":"bench"}]'
	fi
	cat >"$d/weir.json" <<EOF
{"_format_version":"3.0",
 "weir":{"proxy_listen":["127.0.0.1:$port$listen_ssl"],"admin_listen":["127.0.0.1:$WEIR_ADMIN_PORT"],
         "workers":1,"access_log":"off","log_level":"warn"$settings},
 "services":[{"name":"bench","url":"http://127.0.0.1:$BACKEND_PORT",
              "routes":[{"name":"bench","paths":["/"]}]}]$plugins}
EOF
	proxy_log=$d/weir.log
	spawn "$PROXY_CPU" "$proxy_log" "$WEIR_BIN" -c "$d/weir.json"
	proxy_pid=$spawned_pid
	wait_ready "$name" "$proxy_pid" "$port"
}

start_weir_lua() { start_weir lua; }

# ------------------------------------------------------------ TLS termination
# weir_tls, nginx_tls, haproxy_tls: the same proxying behind a TLS listener with one RSA-2048
# certificate (made here with the openssl CLI), TLS 1.2 and 1.3, session cache and tickets.
# wrk measures keep-alive requests over TLS; then `openssl s_time` measures new connections per
# second, full handshakes (-new) and resumed ones (-reuse), each with one request (-www /).
tls_cert() { # the certificate and key (and HAProxy's combined file) in $tmp/tls, once
	[[ -f $tmp/tls/cert.pem ]] && return 0
	mkdir -p "$tmp/tls"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/tls/key.pem" -out "$tmp/tls/cert.pem" \
		-days 2 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		>/dev/null 2>&1 || { echo "openssl could not make a certificate" >&2; return 1; }
	cat "$tmp/tls/cert.pem" "$tmp/tls/key.pem" >"$tmp/tls/combined.pem"
}

start_weir_tls() { start_weir tls; }
start_nginx_tls() { start_nginx tls; }
start_haproxy_tls() { start_haproxy tls; }

# s_time_rate PORT MODE: new TLS connections per second (-new: full handshakes, -reuse: resumed
# sessions), each fetching / once, over 4 s from 4 openssl processes at once on LOAD_CPU (one
# alone would measure its own round trips, not the proxy); empty on failure.
s_time_rate() {
	local i pids=()
	for ((i = 0; i < 4; i++)); do
		pin "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$1" "$2" -time 4 -www / \
			>"$tmp/s_time.$i" 2>/dev/null &
		pids+=($!)
	done
	wait "${pids[@]}" || true # (a bare wait would wait for the proxy too)
	cat "$tmp"/s_time.? | awk '/connections in [0-9.]+ real seconds/ { if ($4 > 0) r += $1 / $4; n++ }
		END { if (n == 4 && r > 0) printf "%.0f", r }'
}

# ------------------------------------------------- policy: JWT + Redis + rewrite
# Both policy proxies verify an HS256 JWT whose iss names a consumer's key,
# count the request in Redis with one atomic script per request (a limit far
# above what a run reaches, so every request does the whole work and passes)
# and rewrite /api/(.*) to /v2/$1 before proxying.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
policy_token() { # an HS256 JWT, made with the openssl CLI
	local h p s
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '{"iss":"%s","sub":"bench","exp":%d}' "$POLICY_JWT_KEY" $(($(date +%s) + 86400)) | b64url)
	s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$POLICY_JWT_SECRET" -binary | b64url)
	printf '%s.%s.%s' "$h" "$p" "$s"
}
POLICY_TOKEN=$(policy_token)

redis_pid=
ensure_redis() { # one redis-server on LOAD_CPU for both policy proxies, emptied for each
	local i
	if [[ -z $redis_pid ]] || ! alive "$redis_pid"; then
		spawn "$LOAD_CPU" "$tmp/redis.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
			--save '' --appendonly no --dir "$tmp"
		redis_pid=$spawned_pid
		for ((i = 0; i < 50; i++)); do
			redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
			sleep 0.1
		done
	fi
	if ! redis-cli -p "$REDIS_PORT" flushall >/dev/null 2>&1; then
		echo "redis-server did not start" >&2
		show_log "$tmp/redis.log"
		return 1
	fi
}
# policy_ready NAME PID PORT: the proxy answers the signed request with the
# backend's body (so it rewrote the path), refuses a request without a token
# with 401, and counted in Redis.
policy_ready() {
	local name=$1 pid=$2 port=$3 code keys
	wait_ready "$name" "$pid" "$port" "$POLICY_PATH" "Authorization: Bearer $POLICY_TOKEN" || return 1
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$POLICY_PATH")
	[[ $code == 401 ]] || { echo "$name: a request without a JWT got $code, not 401" >&2; return 1; }
	keys=$(redis-cli -p "$REDIS_PORT" dbsize)
	[[ $keys -ge 1 ]] || { echo "$name: nothing was counted in Redis" >&2; return 1; }
}

start_nginx_lua() {
	ensure_redis || return 1
	local d=$tmp/nginx_lua
	mkdir -p "$d"
	{
		echo "load_module /usr/lib/nginx/modules/ndk_http_module.so;"
		echo "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
		nginx_common "$d"
		cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$d")
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    lua_package_path "/usr/share/lua/5.1/?.lua;;";
    init_by_lua_block {
        -- What an OpenResty user writes with Debian's packages (Debian has no
        -- lua-resty-jwt): HMAC-SHA256 over nginx.sha256 (FFI to OpenSSL) with
        -- the key pads computed once, cjson, ngx.base64, nginx.redis.
        local bit = require "bit"
        local function pad(key, byte)
            local t = {}
            for i = 1, 64 do t[i] = string.char(bit.bxor(key:byte(i) or 0, byte)) end
            return table.concat(t)
        end
        local secret = "$POLICY_JWT_SECRET"
        CREDENTIALS = { ["$POLICY_JWT_KEY"] = { ipad = pad(secret, 0x36), opad = pad(secret, 0x5c) } }
        RATE_SCRIPT = "local c = redis.call('INCR', KEYS[1]) " ..
            "if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end " ..
            "if c > tonumber(ARGV[1]) then return {0, c} end return {1, c}"
        RATE_SHA = require("nginx.string").to_hex(ngx.sha1_bin(RATE_SCRIPT))
    }
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_LUA_PORT;
        location / {
            rewrite_by_lua_block {
                local m = ngx.re.match(ngx.var.uri, [[^/api/(.*)\$]], "jo")
                if m then ngx.req.set_uri("/v2/" .. m[1]) end
            }
            access_by_lua_block {
                local cjson = require "cjson.safe"
                local b64 = require "ngx.base64"
                local sha256 = require "nginx.sha256"
                local function deny(msg)
                    ngx.status = 401
                    ngx.header["Content-Type"] = "application/json"
                    ngx.say(cjson.encode({ message = msg }))
                    return ngx.exit(401)
                end
                local auth = ngx.var.http_authorization
                if not auth or auth:sub(1, 7) ~= "Bearer " then return deny("Unauthorized") end
                local h64, p64, s64 = auth:sub(8):match("^([^.]+)%.([^.]+)%.([^.]+)\$")
                if not h64 then return deny("Bad token") end
                local header = cjson.decode(b64.decode_base64url(h64) or "")
                local claims = cjson.decode(b64.decode_base64url(p64) or "")
                if type(header) ~= "table" or type(claims) ~= "table" or header.alg ~= "HS256" then
                    return deny("Bad token")
                end
                local cred = CREDENTIALS[claims.iss]
                if not cred then return deny("No credentials found for given 'iss'") end
                local inner = sha256:new()
                inner:update(cred.ipad)
                inner:update(h64 .. "." .. p64)
                local outer = sha256:new()
                outer:update(cred.opad)
                outer:update(inner:final())
                if outer:final() ~= b64.decode_base64url(s64) then return deny("Invalid signature") end
                if type(claims.exp) ~= "number" or claims.exp <= ngx.time() then
                    return deny("token expired")
                end

                local redis = require "nginx.redis"
                local red = redis:new()
                red:set_timeouts(2000, 2000, 2000)
                local ok, err = red:connect("127.0.0.1", $REDIS_PORT)
                if not ok then return ngx.exit(503) end
                local limit = 1000000000
                local key = "ratelimit:" .. claims.iss .. ":minute:" .. math.floor(ngx.time() / 60)
                local res
                res, err = red:evalsha(RATE_SHA, 1, key, limit, 60)
                if not res and err and err:find("NOSCRIPT", 1, true) then
                    res, err = red:eval(RATE_SCRIPT, 1, key, limit, 60)
                end
                if not res then return ngx.exit(503) end
                red:set_keepalive(60000, 64)
                ngx.header["X-RateLimit-Limit-Minute"] = limit
                ngx.header["X-RateLimit-Remaining-Minute"] = limit - res[2]
                if res[1] == 0 then return ngx.exit(429) end
            }
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	} >"$d/nginx.conf"
	proxy_log=$d/error.log
	spawn "$PROXY_CPU" "$d/stdout.log" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
	proxy_pid=$spawned_pid
	policy_ready nginx_lua "$proxy_pid" "$NGINX_LUA_PORT"
}

start_weir_policy() { # Weir's bundled jwt, rate-limiting (policy redis) and url-rewrite
	ensure_redis || return 1
	build_weir || return 1
	local d=$tmp/weir_policy
	mkdir -p "$d"
	cat >"$d/weir.json" <<EOF
{"_format_version":"3.0",
 "weir":{"proxy_listen":["127.0.0.1:$WEIR_PORT"],"admin_listen":["127.0.0.1:$WEIR_ADMIN_PORT"],
         "workers":1,"access_log":"off","log_level":"warn"},
 "consumers":[{"username":"bench","jwt_secrets":[{"key":"$POLICY_JWT_KEY",
               "secret":"$POLICY_JWT_SECRET","algorithm":"HS256"}]}],
 "services":[{"name":"bench","url":"http://127.0.0.1:$BACKEND_PORT",
              "routes":[{"name":"bench","paths":["/"]}]}],
 "plugins":[{"name":"jwt","route":"bench","config":{"claims_to_verify":["exp"]}},
            {"name":"rate-limiting","route":"bench",
             "config":{"minute":1000000000,"limit_by":"consumer","policy":"redis",
                       "redis":{"host":"127.0.0.1","port":$REDIS_PORT}}},
            {"name":"url-rewrite","route":"bench",
             "config":{"rules":[{"match":"^/api/(.*)\$","replace":"/v2/\$1"}]}}]}
EOF
	proxy_log=$d/weir.log
	spawn "$PROXY_CPU" "$proxy_log" "$WEIR_BIN" -c "$d/weir.json"
	proxy_pid=$spawned_pid
	policy_ready weir_policy "$proxy_pid" "$WEIR_PORT"
}

# ------------------------------------------------------------- measurement
CLK_TCK=$(getconf CLK_TCK)

cpu_ticks() { # cpu_ticks PID...: summed utime+stime, in clock ticks
	local p total=0 t
	for p in "$@"; do
		# Fields after "pid (comm) " start at field 3 (state): 14/15 are 12/13.
		t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=
		if [[ -z $t ]]; then
			echo "warning: pid $p exited during the run; its CPU time is lost" >&2
			t=0
		fi
		total=$((total + t))
	done
	echo "$total"
}

# parse_wrk FILE: "rps p50_ms p99_ms requests errors error_detail"
parse_wrk() {
	awk '
	function ms(v,   n, u) {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") return n / 1000
		if (u == "ms") return n
		if (u == "s")  return n * 1000
		if (u == "m")  return n * 60000
		if (u == "h")  return n * 3600000
		return -1
	}
	$1 == "50%"                { p50 = ms($2) }
	$1 == "99%"                { p99 = ms($2) }
	/ requests in /            { reqs = $1 }
	$1 == "Requests/sec:"      { rps = $2 }
	/Socket errors:/           { c = $4 + 0; r = $6 + 0; w = $8 + 0; t = $10 + 0 }
	/Non-2xx or 3xx responses/ { bad = $NF + 0 }
	END {
		if (rps == "" || reqs == "" || p50 == "" || p99 == "") exit 1
		printf "%s %.3f %.3f %d %d connect=%d,read=%d,write=%d,timeout=%d,non2xx3xx=%d\n",
			rps, p50, p99, reqs, c + r + w + t + bad, c, r, w, t, bad
	}' "$1"
}

run_wrk() { # run_wrk DURATION PORT OUT [PATH [HEADER]]: wrk in the background, so traps fire
	local hdr=()
	[[ -n ${5:-} ]] && hdr=(-H "$5")
	spawn "$LOAD_CPU" "$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" --latency "${hdr[@]}" \
		"$SCHEME://127.0.0.1:$2${4:-/}"
	local pid=$spawned_pid
	local rc=0
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

# RES[name,round]: "rps p50 p99 cpu_us_per_req requests errors error_detail"
declare -A RES
declare -A UNAVAILABLE # name -> 1 once it failed to start or to run
declare -A SUCCEEDED   # name -> 1 once it completed a round
declare -A HS_NEW HS_REUSE # [name,round]: TLS connections/s, full and resumed handshakes

bench_one() { # bench_one NAME PORT ROUND
	local name=$1 port=$2 round=$3 pids out line
	proxy_pid='' proxy_log=''
	SCHEME=http
	[[ $name == *_tls ]] && SCHEME=https
	echo
	if ((ROUNDS > 1)); then
		echo "== $name (127.0.0.1:$port), round $round/$ROUNDS"
	else
		echo "== $name (127.0.0.1:$port)"
	fi
	if [[ -n ${UNAVAILABLE[$name]:-} && -z ${SUCCEEDED[$name]:-} ]]; then
		echo "$name: not available (failed in an earlier round)"
		return 0
	fi
	if ! "start_$name"; then
		[[ -n $proxy_log ]] && show_log "$proxy_log"
		echo "$name: not available"
		UNAVAILABLE[$name]=1
		[[ -n $proxy_pid ]] && stop_pid "$proxy_pid"
		return 0
	fi
	local path=/ hdr='' # the policy pair is sent a signed request (the token is made by start_)
	if [[ $name == weir_policy || $name == nginx_lua ]]; then
		path=$POLICY_PATH hdr="Authorization: Bearer $POLICY_TOKEN"
	fi
	if ! run_wrk "$WARMUP" "$port" "$tmp/wrk-$name-warmup.txt" "$path" "$hdr"; then
		sed 's/^/    /' "$tmp/wrk-$name-warmup.txt"
		echo "$name: warm-up wrk failed: not available"
		UNAVAILABLE[$name]=1
		stop_pid "$proxy_pid"
		return 0
	fi
	mapfile -t pids < <(echo "$proxy_pid"; descendants "$proxy_pid")
	local before after
	before=$(cpu_ticks "${pids[@]}")
	out=$tmp/wrk-$name.txt
	local wrk_rc=0
	run_wrk "$DURATION" "$port" "$out" "$path" "$hdr" || wrk_rc=$?
	after=$(cpu_ticks "${pids[@]}")
	sed 's/^/    /' "$out"
	if [[ $name == *_tls ]] && alive "$proxy_pid"; then
		HS_NEW[$name,$round]=$(s_time_rate "$port" -new)
		HS_REUSE[$name,$round]=$(s_time_rate "$port" -reuse)
		echo "   new TLS connections/s (openssl s_time, one request each): full handshake" \
			"${HS_NEW[$name,$round]:-failed}, resumed ${HS_REUSE[$name,$round]:-failed}"
	fi
	if ! alive "$proxy_pid"; then
		echo "$name: died during the run: not available"
		show_log "$proxy_log"
		stop_pid "$proxy_pid"
		UNAVAILABLE[$name]=1
		return 0
	fi
	stop_pid "$proxy_pid"
	if ((wrk_rc != 0)) || ! line=$(parse_wrk "$out"); then
		echo "$name: wrk failed or its output could not be parsed: not available"
		UNAVAILABLE[$name]=1
		return 0
	fi
	local rps p50 p99 reqs errs detail cpu
	read -r rps p50 p99 reqs errs detail <<<"$line"
	cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
		'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "n/a" }')
	RES[$name,$round]="$rps $p50 $p99 $cpu $reqs $errs $detail"
	SUCCEEDED[$name]=1
	echo "   CPU: $((after - before)) ticks at $CLK_TCK/s over pids ${pids[*]} = $cpu us/req"
	if [[ $errs != 0 ]]; then
		echo "   errors: $detail"
	fi
}

median() { # median NUMBER...: their median, empty when none
	printf '%s\n' "$@" | grep -v -e '^$' -e '^n/a$' | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) exit
			if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

ratio() { # ratio A B: A/B with 2 decimals, n/a when either is missing
	awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
		if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"
		else printf "%.2f", a / b }'
}

row() { # row LABEL RPS P50 P99 CPU ERRORS
	local cpu=$5
	[[ $cpu == n/a ]] || printf -v cpu '%.2f' "$cpu"
	printf '%-12s %10.0f %9.3f %9.3f %12s %8s\n' "$1" "$2" "$3" "$4" "$cpu" "$6"
}

# --------------------------------------------------------------------- run
mkdir -p bench/results
report=$tmp/report.txt
busy_percent() { # busy_percent: how busy the CPUs are over 1 s (others' load)
	local a b
	a=$(head -n 1 /proc/stat)
	sleep 1
	b=$(head -n 1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN {
		n = split(a, x); split(b, y); total = 0
		for (i = 2; i <= n; i++) total += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6])
		printf "%.0f", (total > 0 ? 100 * (total - idle) / total : 0) }'
}
header() {
	echo "Weir benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
	echo "machine: $(nproc) CPUs, $(uname -sr), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1);" \
		"busy before start: ${busy_pct}%"
	echo "wrk: -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP) --latency, path / (weir_policy, nginx_lua: $POLICY_PATH with a JWT), loopback;" \
		"rounds: $ROUNDS; pinning: $([[ $TASKSET == 1 ]] && echo "proxy CPU $PROXY_CPU, wrk+backend CPU $LOAD_CPU" || echo none)"
	if awk -v b="$busy_pct" 'BEGIN { exit !(b > 15) }'; then
		echo "warning: other processes kept the CPUs ${busy_pct}% busy just before the run:" \
			"numbers will be noisier; use ROUNDS=3, or run on an idle machine"
	fi
	echo "versions: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(haproxy -v | head -n 1 | awk '{print "haproxy/" $3}')"
}

port_of() {
	case $1 in
	nginx) echo "$NGINX_PORT" ;;
	haproxy) echo "$HAPROXY_PORT" ;;
	weir | weir_lua | weir_policy) echo "$WEIR_PORT" ;;
	nginx_lua) echo "$NGINX_LUA_PORT" ;;
	weir_tls) echo "$WEIR_TLS_PORT" ;;
	nginx_tls) echo "$NGINX_TLS_PORT" ;;
	haproxy_tls) echo "$HAPROXY_TLS_PORT" ;;
	esac
}

failed=()
if ((${#proxies[@]} > 0)); then
	busy_pct=$(busy_percent)
	header | tee "$report"
	start_backend
	echo "backend: nginx on 127.0.0.1:$BACKEND_PORT (pid $backend_pid)"
	for ((round = 1; round <= ROUNDS; round++)); do
		# Rotate the order from round to round so no proxy always goes first.
		n=${#proxies[@]}
		for ((k = 0; k < n; k++)); do
			p=${proxies[$(((k + round - 1) % n))]}
			bench_one "$p" "$(port_of "$p")" "$round"
		done
	done
	stop_pid "$backend_pid"
	[[ -z $redis_pid ]] || stop_pid "$redis_pid"

	declare -A M_RPS M_P50 M_P99 M_CPU M_ERR
	declare -A DETAIL
	for p in "${proxies[@]}"; do
		[[ -n ${UNAVAILABLE[$p]:-} ]] && failed+=("$p")
		rps=() p50=() p99=() cpu=() errs=0 details=''
		for ((round = 1; round <= ROUNDS; round++)); do
			[[ -n ${RES[$p,$round]:-} ]] || continue
			read -r a b c d _ f g <<<"${RES[$p,$round]}"
			rps+=("$a") p50+=("$b") p99+=("$c") cpu+=("$d")
			errs=$((errs + f))
			((f == 0)) || details+=" [round $round: $g]"
		done
		((${#rps[@]} > 0)) || continue
		M_RPS[$p]=$(median "${rps[@]}") M_P50[$p]=$(median "${p50[@]}")
		M_P99[$p]=$(median "${p99[@]}") M_CPU[$p]=$(median "${cpu[@]}")
		M_CPU[$p]=${M_CPU[$p]:-n/a} M_ERR[$p]=$errs DETAIL[$p]=$details
	done

	{
		echo
		if ((ROUNDS > 1)); then
			echo "per round:"
			printf '%-12s %10s %9s %9s %12s %8s\n' "proxy/round" "req/s" "p50 ms" "p99 ms" "CPU us/req" errors
			for p in "${proxies[@]}"; do
				for ((round = 1; round <= ROUNDS; round++)); do
					[[ -n ${RES[$p,$round]:-} ]] || continue
					read -r a b c d _ f _ <<<"${RES[$p,$round]}"
					row "$p/$round" "$a" "$b" "$c" "$d" "$f"
				done
			done
			echo
			echo "median of $ROUNDS rounds (errors: total):"
		fi
		printf '%-12s %10s %9s %9s %12s %8s\n' proxy "req/s" "p50 ms" "p99 ms" "CPU us/req" errors
		for p in "${proxies[@]}"; do
			if [[ -n ${M_RPS[$p]:-} ]]; then
				row "$p" "${M_RPS[$p]}" "${M_P50[$p]}" "${M_P99[$p]}" "${M_CPU[$p]}" "${M_ERR[$p]}"
			else
				printf '%-12s %10s\n' "$p" "not available"
			fi
		done
		for p in "${proxies[@]}"; do
			if [[ -n ${M_ERR[$p]:-} && ${M_ERR[$p]} != 0 ]]; then
				echo "errors in $p:${DETAIL[$p]}"
			fi
		done
		if [[ " ${proxies[*]} " == *" weir "* ]] && ((${#proxies[@]} > 1)); then
			echo
			printf '%-13s %16s %16s %16s\n' ratio "req/s" "p99" "CPU/req"
			printf '%-13s %16s %16s %16s\n' "" "(higher better)" "(lower better)" "(lower better)"
			for p in nginx haproxy; do
				[[ " ${proxies[*]} " == *" $p "* ]] || continue
				label=$([[ $p == nginx ]] && echo nginx || echo HAProxy)
				printf '%-13s %16s %16s %16s\n' "Weir/$label" \
					"$(ratio "${M_RPS[weir]:-}" "${M_RPS[$p]:-}")" \
					"$(ratio "${M_P99[weir]:-}" "${M_P99[$p]:-}")" \
					"$(ratio "${M_CPU[weir]:-}" "${M_CPU[$p]:-}")"
			done
		fi
		if [[ -n ${M_RPS[weir]:-} && -n ${M_RPS[weir_lua]:-} ]]; then
			echo
			echo "Lua plugin overhead (a no-op plugin in every phase vs the same route without):"
			printf '%-13s %16s %16s %16s\n' "weir_lua/weir" \
				"$(ratio "${M_RPS[weir_lua]}" "${M_RPS[weir]}")" \
				"$(ratio "${M_P99[weir_lua]}" "${M_P99[weir]}")" \
				"$(ratio "${M_CPU[weir_lua]:-}" "${M_CPU[weir]:-}")"
		fi
		if [[ -n ${M_RPS[weir_policy]:-} && -n ${M_RPS[nginx_lua]:-} ]]; then
			echo
			echo "JWT + Redis rate limit + rewrite (Weir's bundled plugins vs nginx+Lua):"
			printf '%-13s %16s %16s %16s\n' "Weir/ngx+Lua" \
				"$(ratio "${M_RPS[weir_policy]}" "${M_RPS[nginx_lua]}")" \
				"$(ratio "${M_P99[weir_policy]}" "${M_P99[nginx_lua]}")" \
				"$(ratio "${M_CPU[weir_policy]:-}" "${M_CPU[nginx_lua]:-}")"
		fi
		tls_rows=()
		for p in weir_tls nginx_tls haproxy_tls; do
			[[ " ${proxies[*]} " == *" $p "* && -n ${M_RPS[$p]:-} ]] && tls_rows+=("$p")
		done
		if ((${#tls_rows[@]} > 0)); then
			declare -A M_NEW M_REUSE
			echo
			echo "TLS termination (RSA-2048; keep-alive req/s from wrk, new connections/s from openssl s_time):"
			printf '%-12s %14s %16s %16s %12s\n' proxy "keep-alive r/s" "full handshake/s" \
				"resumed/s" "CPU us/req"
			for p in "${tls_rows[@]}"; do
				nw=() ru=()
				for ((round = 1; round <= ROUNDS; round++)); do
					nw+=("${HS_NEW[$p,$round]:-}") ru+=("${HS_REUSE[$p,$round]:-}")
				done
				M_NEW[$p]=$(median "${nw[@]}") M_REUSE[$p]=$(median "${ru[@]}")
				printf '%-12s %14.0f %16s %16s %12s\n' "$p" "${M_RPS[$p]}" "${M_NEW[$p]:-n/a}" \
					"${M_REUSE[$p]:-n/a}" "${M_CPU[$p]}"
			done
			if [[ -n ${M_RPS[weir_tls]:-} ]]; then
				printf '%-17s %14s %16s %16s %12s\n' ratio "keep-alive r/s" "full handshake/s" \
					"resumed/s" "CPU/req"
				for p in nginx_tls haproxy_tls; do
					[[ -n ${M_RPS[$p]:-} ]] || continue
					printf '%-17s %14s %16s %16s %12s\n' "weir_tls/$p" \
						"$(ratio "${M_RPS[weir_tls]}" "${M_RPS[$p]}")" \
						"$(ratio "${M_NEW[weir_tls]:-}" "${M_NEW[$p]:-}")" \
						"$(ratio "${M_REUSE[weir_tls]:-}" "${M_REUSE[$p]:-}")" \
						"$(ratio "${M_CPU[weir_tls]:-}" "${M_CPU[$p]:-}")"
				done
			fi
		fi
		if ((${#failed[@]} > 0)); then
			echo
			for p in "${failed[@]}"; do echo "$p: not available"; done
		fi
	} | tee -a "$report"
fi

# ---------------------------------------------------------- router_scale
if selected router && [[ -f bench/router_scale.c ]]; then
	{
		echo
		echo "== router_scale (bench/router_scale.c)"
	} | tee -a "$report"
	if gcc -O2 -std=c11 -D_GNU_SOURCE -Igateway bench/router_scale.c gateway/router/*.c \
		gateway/core/errlist.c -lpcre2-8 -o "$tmp/router_scale" >"$tmp/router_scale.build.log" 2>&1; then
		if ! pin "$PROXY_CPU" "$tmp/router_scale" 2>&1 | tee -a "$report"; then
			echo "router_scale: exited non-zero; skipped" | tee -a "$report"
		fi
	else
		show_log "$tmp/router_scale.build.log"
		echo "router_scale: did not compile; skipped" | tee -a "$report"
	fi
elif selected router && ((${#only[@]} > 0)); then
	echo "router_scale: bench/router_scale.c does not exist; skipped" | tee -a "$report"
fi

# ---------------------------------------------------------- admin changes
# Only when named: route changes under load (bench/admin_changes.py, its own
# ports 18090-18099 and its own report in bench/results/admin_changes-*.json).
if [[ " ${only[*]} " == *" changes "* ]]; then
	echo
	echo "== admin changes (bench/admin_changes.py)"
	DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS TASKSET=$TASKSET \
		ROUNDS=$ROUNDS PROXY_CPU=$PROXY_CPU LOAD_CPU=$LOAD_CPU python3 bench/admin_changes.py || failed+=(changes)
fi

if [[ -s $report ]]; then
	cp "$report" bench/results/latest.txt
	cp "$report" "bench/results/$(date -u +%Y%m%d-%H%M%S).txt"
	echo
	echo "saved: bench/results/latest.txt"
fi

((${#failed[@]} == 0)) || exit 1
exit 0
