#!/usr/bin/env bash
# Builds OpenBLAS with bfloat16 GEMMs (cblas_sbgemm) into .deps/openblas-bf16/libopenblas.so, for
# `disco train --bf16` (DISCO_GEMM=bf16). Debian's libopenblas0 is built without bfloat16, so
# this builds the same OpenBLAS release (0.3.21, Debian's source tarball) with BUILD_BFLOAT16=1:
# single precision only (disco's GEMMs), no LAPACK, DYNAMIC_ARCH for the kernel sets disco picks
# (Haswell on AVX2, SkylakeX on AVX-512, Cooperlake on AVX512-BF16). disco keeps Debian's OpenBLAS
# for everything else and takes only cblas_sbgemm from this one. About 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.deps/openblas-bf16
lib=$out/libopenblas.so
version=0.3.21
tarball=openblas_${version}+ds.orig.tar.xz
url=https://deb.debian.org/debian/pool/main/o/openblas/$tarball
sha256=bbec5cca61c8033b2d57aaecde205d709323a0b35a5f193290081dbb3826848a

if [ "$(uname -m)" != x86_64 ]; then
  echo "build-openblas-bf16: skipped on $(uname -m) (the bfloat16 kernels disco uses are x86-64's: AVX512-BF16)"
  exit 0
fi
if [ -f "$lib" ] && nm -D "$lib" 2>/dev/null | grep ' T cblas_sbgemm$' >/dev/null; then exit 0; fi

need=()
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
command -v xz >/dev/null || need+=(xz-utils)
command -v nm >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

build=.deps/build
mkdir -p "$build" "$out"
if [ ! -f "$build/$tarball" ]; then
  echo "fetching $url"
  curl -fsSL --retry 3 -o "$build/$tarball.part" "$url"
  mv "$build/$tarball.part" "$build/$tarball"
fi
echo "$sha256  $build/$tarball" | sha256sum -c --quiet - || {
  echo "build-openblas-bf16: $build/$tarball does not have the expected SHA-256; delete it and run again" >&2; exit 1; }
rm -rf "$build/OpenBLAS-$version"
tar -C "$build" -xf "$build/$tarball"
echo "building OpenBLAS $version with BUILD_BFLOAT16=1 (log: $build/build.log)"
if ! make -C "$build/OpenBLAS-$version" -j"$(nproc)" DYNAMIC_ARCH=1 DYNAMIC_LIST="HASWELL SKYLAKEX COOPERLAKE" \
     BUILD_BFLOAT16=1 BUILD_SINGLE=1 NO_LAPACK=1 NO_LAPACKE=1 NOFORTRAN=1 NO_CBLAS=0 USE_THREAD=1 NUM_THREADS=64 \
     NO_AFFINITY=1 NO_STATIC=1 libs shared > "$build/build.log" 2>&1; then
  tail -20 "$build/build.log" >&2
  echo "build-openblas-bf16: the OpenBLAS build failed (whole log: $build/build.log)" >&2
  exit 1
fi
cp "$build/OpenBLAS-$version/libopenblas.so" "$lib.part"
mv "$lib.part" "$lib"
rm -rf "$build/OpenBLAS-$version"
nm -D "$lib" | grep ' T cblas_sbgemm$' >/dev/null || { echo "build-openblas-bf16: $lib has no cblas_sbgemm" >&2; exit 1; }
echo "built $lib"
