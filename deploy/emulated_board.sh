#!/usr/bin/env bash
# An emulated aarch64 board on an x86_64 Debian/Ubuntu host, without a chroot or a VM:
# Debian's arm64 CPython 3.11 run by qemu-user-static, with the registry's aarch64 wheels of
# the device runtime's packages and one folder per onnxruntime version.
#
#   bash deploy/emulated_board.sh [DEST] [ONNXRUNTIME_VERSION ...]
#
# DEST (default .arm-env) receives root/ (the unpacked arm64 packages), site/ (numpy,
# opencv-python-headless, pyyaml), ort-VERSION/ and bin/python-ort-VERSION, an interpreter
# that sees site/ and that onnxruntime:
#
#   .arm-env/bin/python-ort-1.17.3 deploy/python/infer.py --model_dir EXPORT --image_path IMG
#
# Needs root for apt-get (qemu-user-static, `dpkg --add-architecture arm64`), network access
# to the Debian archive and to PyPI, and `python3 -m pip` ($PYTHON picks the interpreter).
# Timings under emulation are not board timings: use it to check labels, not speed.
set -euo pipefail

DEST=${1:-.arm-env}
shift || true
ORT_VERSIONS=("$@")
[[ ${#ORT_VERSIONS[@]} -gt 0 ]] || ORT_VERSIONS=(1.15.1 1.17.3 1.27.0)
PYTHON=${PYTHON:-python3}
# Debian 12's arm64 CPython 3.11 and the libraries its standard library, NumPy, OpenCV's
# wheel and onnxruntime load.
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1
    libstdc++6 zlib1g libexpat1 libffi8 libbz2-1.0 liblzma5 libssl3 libsqlite3-0 libuuid1
    libncursesw6 libtinfo6 libreadline8 libcrypt1 libdb5.3 libnsl2 libtirpc3
    libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1)
# numpy 1.x: onnxruntime releases before 1.19 are built against it.
WHEELS=(numpy==1.26.4 opencv-python-headless==4.10.0.84 pyyaml==6.0.2)
WHEEL_PLATFORM=(--platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64
    --platform manylinux2014_aarch64 --only-binary=:all: --python-version 3.11
    --implementation cp --abi cp311)

fail() {
    echo "emulated_board: $*" >&2
    exit 1
}
step() { echo "emulated_board: $*"; }

[[ "$(uname -m)" == x86_64 ]] || fail "this script emulates aarch64 on an x86_64 host"
for version in "${ORT_VERSIONS[@]}"; do
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "bad onnxruntime version '$version'"
done
if ! command -v qemu-aarch64-static >/dev/null ||
    ! dpkg --print-foreign-architectures | grep -qx arm64; then
    [[ $(id -u) -eq 0 ]] || fail "needs root once: apt-get install qemu-user-static and" \
        "dpkg --add-architecture arm64 (or run this script as root)"
    command -v apt-get >/dev/null || fail "needs apt-get (Debian or Ubuntu host)"
    step "installing qemu-user-static and the arm64 package lists"
    dpkg --add-architecture arm64
    apt-get update -qq
    apt-get install -y -qq qemu-user-static >/dev/null
fi

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
rm -rf "$DEST/root" "$DEST/site" "$DEST/bin" "$DEST"/ort-* "$DEST/.installed"
mkdir -p "$DEST/debs" "$DEST/root" "$DEST/bin"

step "downloading Debian's arm64 python3.11 (${#DEBS[@]} packages)"
download() {
    # Into the current folder, as root: no sandbox user (_apt cannot write there).
    (cd "$DEST/debs" && apt-get download -o APT::Sandbox::User=root -qq "${DEBS[@]/%/:arm64}")
}
download 2>/dev/null || { apt-get update -qq && download; } ||
    fail "apt-get download of the arm64 packages failed (see the lines above)"
for deb in "$DEST"/debs/*.deb; do
    dpkg -x "$deb" "$DEST/root"
done
rm -rf "$DEST/debs"

pip_target() {
    local target=$1
    shift
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$target" \
        "${WHEEL_PLATFORM[@]}" "$@" || fail "pip could not fetch aarch64 wheels of $*"
}
step "installing aarch64 wheels: ${WHEELS[*]}"
pip_target "$DEST/site" "${WHEELS[@]}"
for version in "${ORT_VERSIONS[@]}"; do
    step "installing onnxruntime $version (aarch64)"
    pip_target "$DEST/ort-$version" "onnxruntime==$version"
    cat >"$DEST/bin/python-ort-$version" <<EOF
#!/bin/sh
# Debian's arm64 CPython 3.11 under qemu-user with onnxruntime $version (deploy/emulated_board.sh).
PYTHONPATH="$DEST/site:$DEST/ort-$version\${PYTHONPATH:+:\$PYTHONPATH}" \\
    exec qemu-aarch64-static -L "$DEST/root" "$DEST/root/usr/bin/python3.11" "\$@"
EOF
    chmod +x "$DEST/bin/python-ort-$version"
    "$DEST/bin/python-ort-$version" -c "
import platform, cv2, numpy, onnxruntime
assert platform.machine() == 'aarch64', platform.machine()
assert onnxruntime.__version__ == '$version', onnxruntime.__version__
print('emulated_board: python-ort-$version: aarch64 CPython', platform.python_version(),
      'numpy', numpy.__version__, 'opencv', cv2.__version__, 'onnxruntime', onnxruntime.__version__)
" || fail "onnxruntime $version does not run under $(qemu-aarch64-static --version | head -n 1)"
done
printf '%s\n' "${ORT_VERSIONS[@]}" >"$DEST/.installed"
step "ready: $DEST/bin/python-ort-{$(
    IFS=,
    echo "${ORT_VERSIONS[*]}"
)}"
