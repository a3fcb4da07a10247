#!/usr/bin/env bash
# Builds the example Go and Java clients of audiosearch.v1.AudioSearchService into OUTDIR
# (default build/clients), generating all code from protos/ with protoc. Nothing generated is committed.
#
# Uses Debian packages only (no module proxy, no Maven Central): the checks below name the package
# to install for anything missing.
#
# Produces:
#   OUTDIR/bin/audiosearch-go-client       Go binary
#   OUTDIR/bin/audiosearch-java-client     launcher: java -cp <classpath> dev.audiosearch.example.Client "$@"
#   OUTDIR/java/audiosearch-java-client.jar  runnable with java -jar (manifest Class-Path -> /usr/share/java)
#   OUTDIR/java/classpath.txt              the runtime classpath, colon-separated
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/build/clients}
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() { echo "build_clients.sh: error: $*" >&2; exit 1; }
step() { echo "build_clients.sh: $*" >&2; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install -y $2)"; }

need_cmd protoc protobuf-compiler
need_cmd go golang-go
need_cmd protoc-gen-go-grpc protoc-gen-go-grpc
need_cmd grpc_java_plugin protobuf-compiler-grpc-java-plugin
need_cmd javac openjdk-17-jdk-headless
need_cmd jar openjdk-17-jdk-headless
need_cmd java openjdk-17-jre-headless

gocode=/usr/share/gocode/src
for spec in \
  "google.golang.org/protobuf/cmd/protoc-gen-go:golang-google-protobuf-dev" \
  "google.golang.org/grpc:golang-google-grpc-dev" \
  "google.golang.org/genproto/googleapis/rpc/errdetails:golang-google-genproto-dev"; do
  [[ -d $gocode/${spec%%:*} ]] || die "$gocode/${spec%%:*} missing (apt-get install -y ${spec##*:})"
done

# google/rpc/{status,error_details}.proto for the Java classes com.google.rpc.Status and ErrorInfo
# (Debian's libgoogle-common-protos-java 1.16 predates ErrorInfo, so they are generated here).
find_rpc_protos() {
  local dir python
  for dir in "${GOOGLEAPIS_PROTO_DIR:-}" /usr/share/gocode/src/github.com/gogo/googleapis /usr/include \
    /usr/local/include; do
    if [[ -n $dir && -f $dir/google/rpc/status.proto && -f $dir/google/rpc/error_details.proto ]] &&
      grep -q '^message ErrorInfo' "$dir/google/rpc/error_details.proto"; then
      echo "$dir"
      return
    fi
  done
  # The googleapis-common-protos Python package (a dependency of the services) ships them too.
  for python in "${PYTHON:-}" "$repo/.venv/bin/python" python3; do
    [[ -n $python ]] && command -v "$python" >/dev/null 2>&1 || continue
    dir=$("$python" -c 'import pathlib, google.rpc.status_pb2 as m; print(pathlib.Path(m.__file__).parents[2])' \
      2>/dev/null) || continue
    if [[ -f $dir/google/rpc/status.proto && -f $dir/google/rpc/error_details.proto ]]; then
      echo "$dir"
      return
    fi
  done
  die "google/rpc/status.proto and error_details.proto not found: apt-get install -y \
golang-github-gogo-googleapis-dev, or set GOOGLEAPIS_PROTO_DIR, or PYTHON to a python with googleapis-common-protos"
}
rpc_protos=$(find_rpc_protos)

# Runtime jars from Debian (/usr/share/java), with the package that ships each.
java_dir=/usr/share/java
runtime_jars=(
  grpc-api:libgrpc-java grpc-context:libgrpc-java grpc-core:libgrpc-java grpc-netty:libgrpc-java
  grpc-protobuf:libgrpc-java grpc-protobuf-lite:libgrpc-java grpc-stub:libgrpc-java
  protobuf:libprotobuf-java guava:libguava-java perfmark-api:libperfmark-java gson:libgoogle-gson-java
  netty-buffer:libnetty-java netty-codec:libnetty-java netty-codec-http:libnetty-java
  netty-codec-http2:libnetty-java netty-codec-socks:libnetty-java netty-common:libnetty-java
  netty-handler:libnetty-java netty-handler-proxy:libnetty-java netty-resolver:libnetty-java
  netty-transport:libnetty-java
)
# Compile-time only: @javax.annotation.Generated (emitted by grpc_java_plugin 1.41), @Nullable & co.
compile_jars=(
  geronimo-annotation-1.3-spec:libgeronimo-annotation-1.3-spec-java jsr305:libjsr305-java
  error_prone_annotations:liberror-prone-java
)
jar_paths() {
  local spec path
  for spec in "$@"; do
    path=$java_dir/${spec%%:*}.jar
    [[ -f $path ]] || die "$path missing (apt-get install -y ${spec##*:})"
    echo "$path"
  done
}
mapfile -t runtime_paths < <(jar_paths "${runtime_jars[@]}")
mapfile -t compile_paths < <(jar_paths "${compile_jars[@]}")
((${#runtime_paths[@]} == ${#runtime_jars[@]} && ${#compile_paths[@]} == ${#compile_jars[@]})) ||
  die "missing jars (see above)"
runtime_cp=$(IFS=:; echo "${runtime_paths[*]}")
compile_cp=$runtime_cp:$(IFS=:; echo "${compile_paths[*]}")

mapfile -t protos < <(cd "$repo/protos" && find audiosearch/v1 -name '*.proto' | sort)
((${#protos[@]})) || die "no protos under $repo/protos/audiosearch/v1"

# ---------------------------------------------------------------- Go (GOPATH mode, Debian sources)
go_path=$out/go
go_module=github.com/audiosearch/audiosearch
rm -rf "$go_path/src" "$out/bin"
mkdir -p "$go_path/src" "$out/bin"
export GO111MODULE=off GOPATH=$go_path:/usr/share/gocode GOFLAGS= GOPROXY=off CGO_ENABLED=0
# Go's own build cache (~/.cache/go-build) makes rebuilds fast; fall back to OUTDIR without a usable one.
gocache=$(go env GOCACHE 2>/dev/null || true)
if [[ -z $gocache || $gocache == off ]] || ! mkdir -p "$gocache" 2>/dev/null || [[ ! -w $gocache ]]; then
  gocache=$go_path/cache
fi
export GOCACHE=$gocache

step "building protoc-gen-go (google.golang.org/protobuf, Debian sources)"
go build -o "$out/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go

step "generating Go code"
(cd "$repo/protos" && protoc -I . -I /usr/include \
  --plugin=protoc-gen-go="$out/bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$(command -v protoc-gen-go-grpc)" \
  --go_out="$go_path/src" --go-grpc_out="$go_path/src" "${protos[@]}")
[[ -f $go_path/src/$go_module/gen/go/audiosearch/v1/audiosearch_grpc.pb.go ]] ||
  die "Go stubs not where go_package says ($go_path/src/$go_module/gen/go/audiosearch/v1)"

step "building audiosearch-go-client"
client_dir=$go_path/src/$go_module/clients/go/cmd/audiosearch-go-client
mkdir -p "$client_dir"
cp "$repo"/clients/go/cmd/audiosearch-go-client/*.go "$client_dir/"
(cd "$client_dir" && go vet . && go build -o "$out/bin/audiosearch-go-client" .)

# ---------------------------------------------------------------- Java (javac against /usr/share/java)
java_out=$out/java
rm -rf "$java_out"
mkdir -p "$java_out/src" "$java_out/classes"

step "generating Java code (google/rpc protos from $rpc_protos)"
(cd "$repo/protos" && protoc -I . -I /usr/include -I "$rpc_protos" \
  --java_out="$java_out/src" \
  --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" --grpc-java_out="$java_out/src" \
  "${protos[@]}" google/rpc/status.proto google/rpc/error_details.proto)

step "compiling Java"
cp -r "$repo/clients/java/src/." "$java_out/src/"
find "$java_out/src" -name '*.java' | sort >"$java_out/sources.txt"
javac -nowarn -encoding UTF-8 --release 17 -cp "$compile_cp" -d "$java_out/classes" @"$java_out/sources.txt"

{
  echo "Main-Class: dev.audiosearch.example.Client"
  # Manifest lines are at most 72 bytes; continuation lines start with one space.
  printf 'Class-Path: %s\n' "${runtime_paths[*]}" | fold -w 70 | sed '2,$s/^/ /'
} >"$java_out/manifest.txt"
jar --create --file "$java_out/audiosearch-java-client.jar" --manifest "$java_out/manifest.txt" \
  -C "$java_out/classes" .
echo "$java_out/audiosearch-java-client.jar:$runtime_cp" >"$java_out/classpath.txt"

cat >"$out/bin/audiosearch-java-client" <<EOF
#!/bin/sh
exec java \${JAVA_OPTS:-} -cp '$java_out/audiosearch-java-client.jar:$runtime_cp' dev.audiosearch.example.Client "\$@"
EOF
chmod +x "$out/bin/audiosearch-java-client"

step "done: $out/bin/audiosearch-go-client, $out/bin/audiosearch-java-client"
