// libFuzzer targets for the PNG and JPEG decoders (Swift's -sanitize=fuzzer works here, with
// ASan). Compiled only with -D DISCO_FUZZ; in the test target this file is empty.
//
// Build and run one target per decoder (from the repository root; FORMAT is PNG or JPEG):
//
//   mkdir -p /tmp/fuzz && cd /tmp/fuzz
//   printf 'module _CImageCodecs { header "%s" export * }\n' \
//       "$OLDPWD/Sources/_CImageCodecs/include/codecs.h" > module.modulemap
//   for f in png_codec jpeg_codec; do /opt/swift/usr/bin/clang -O1 -g -fsanitize=fuzzer-no-link,address \
//       -I "$OLDPWD/Sources/_CImageCodecs/include" -c "$OLDPWD/Sources/_CImageCodecs/$f.c"; done
//   swiftc -O -sanitize=fuzzer,address -parse-as-library -D DISCO_FUZZ -D FUZZ_PNG -module-name DiscoFuzz \
//       -I . -Xcc -fmodule-map-file=module.modulemap "$OLDPWD"/Sources/DiscoImage/*.swift \
//       "$OLDPWD/Tests/DiscoImageTests/FuzzDecoders.swift" png_codec.o jpeg_codec.o -lpng -ljpeg -o fuzz-png
//   mkdir -p corpus && cp "$OLDPWD"/datasets/samples/*.png corpus/
//   ./fuzz-png -max_total_time=60 -rss_limit_mb=1024 -timeout=5 corpus
//
// (-D FUZZ_JPEG, samples/*.jpg and fuzz-jpeg for the JPEG decoder.) The system libpng/libjpeg
// are not instrumented, so coverage guidance reaches the shim and the Swift layer only.
#if DISCO_FUZZ
#if FUZZ_PNG
private let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
#else
private let signature: [UInt8] = [0xFF, 0xD8, 0xFF]
#endif

/// Decodes the input (its format's signature forced, so every run reaches one decoder) and,
/// when it decodes, checks the image and runs it through the model's preparation.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if !bytes.starts(with: signature) { bytes = signature + bytes }
    let minSide = size > 0 ? Int(data[0] % 32) : 0
    guard let image = try? decodeImage(bytes: bytes, name: "fuzz", maxPixels: 1 << 22, minSide: minSide) else { return 0 }
    precondition(image.pixels.count == image.width * image.height * image.channels)
    precondition(image.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
    _ = image.converted(toChannels: 3).squared(size: 16)
    return 0
}
#endif
