#!/usr/bin/env bash
# Compile the platform-independent core of the Android demo and run its JUnit 4 tests on the
# JVM, with nothing downloaded: javac from a JDK and JUnit 4 + Hamcrest from Debian's packages
#   apt-get install -y default-jdk-headless junit4
# Golden tests against the Python side run when BNNCONVERT_GOLDEN_DIR names a directory that
# tests/test_android_core.py wrote; without it they are skipped.
# The core is compiled for Java 8 (--release 8), the level Android's D8 accepts for minSdk 21.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
java_dir="${JUNIT_JAR_DIR:-/usr/share/java}"
junit="$java_dir/junit4.jar"
hamcrest="$java_dir/hamcrest-core.jar"
for jar in "$junit" "$hamcrest"; do
    if [[ ! -f "$jar" ]]; then
        echo "error: $jar not found; install JUnit 4: apt-get install -y junit4" >&2
        exit 2
    fi
done
for tool in javac java; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; install a JDK: apt-get install -y default-jdk-headless" >&2
        exit 2
    fi
done

# CORE_BUILD_DIR (optional): keep compiled classes there and reuse them on the next run
# (tests/test_android_core.py runs the suite several times); otherwise a temporary directory.
if [[ -n "${CORE_BUILD_DIR:-}" ]]; then
    build="$CORE_BUILD_DIR"
else
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
fi
mapfile -t main_sources < <(find "$here/src/main/java" -name '*.java' | sort)
mapfile -t test_sources < <(find "$here/src/test/java" -name '*.java' | sort)

if [[ ! -f "$build/compiled" ]]; then
    javac --release 8 -Xlint:all -Xlint:-options -Werror -encoding UTF-8 \
        -d "$build/main" "${main_sources[@]}"
    javac --release 8 -Xlint:all -Xlint:-options -encoding UTF-8 \
        -cp "$build/main:$junit:$hamcrest" -d "$build/test" "${test_sources[@]}"
    touch "$build/compiled"
fi

classes=()
for src in "${test_sources[@]}"; do
    name="${src#"$here/src/test/java/"}"
    name="${name%.java}"
    [[ "$name" == *Test ]] && classes+=("${name//\//.}")
done
java -cp "$build/main:$build/test:$junit:$hamcrest" org.bnnconvert.demo.core.TestMain "${classes[@]}"
