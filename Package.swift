// swift-tools-version:6.0
// disco: unpaired image-to-image translation (DiscoGAN) in Swift, on the CPU.
import PackageDescription

import Foundation

// Numeric kernels are compiled with -Ounchecked: bounds are checked by
// preconditions at op entry (shapes), not per element in inner loops.
// On x86-64 they are also compiled for AVX2 + FMA (Haswell, Zen and later: 8-wide instead of
// 4-wide loops for batch norm, activations, Adam, im2col); `disco` checks the CPU at start and
// explains if it lacks them. DISCO_PORTABLE=1 (swift build / make) builds for any x86-64.
#if arch(x86_64)
let avx2 = ProcessInfo.processInfo.environment["DISCO_PORTABLE"] == nil
#else
let avx2 = false
#endif
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"] + (avx2 ? ["-target-cpu", "haswell"] : []))]

let package = Package(
    name: "disco",
    products: [
        .executable(name: "disco", targets: ["disco"]),
        .library(name: "DiscoCore", targets: ["DiscoCore"]),
        .library(name: "DiscoImage", targets: ["DiscoImage"]),
        .library(name: "DiscoGAN", targets: ["DiscoGAN"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Tensors, OpenBLAS loading, convolution / batch norm / loss kernels, Adam, layers.
        .target(name: "DiscoCore", dependencies: ["_CKernels"], swiftSettings: kernelFlags),
        // Elementwise kernels Swift does not vectorize (sigmoid, Adam), in C; no fused multiply-adds
        // and no fast-math, so every element gets the same IEEE arithmetic. Also the direct 3-channel
        // convolutions (direct_conv.c: explicit FMA intrinsics, compiled for AVX2 + FMA by function
        // attribute, so portable builds have them too; used only on a CPU with both).
        .target(name: "_CKernels",
                cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"] + (avx2 ? ["-mavx2"] : []))]),
        // C shim around libpng and libjpeg: error handlers that turn longjmp into error codes.
        .target(
            name: "_CImageCodecs",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]
        ),
        // Image decode/encode, resize/crop/flip, image-folder datasets, Fashion-MNIST builder
        // (files written through DiscoCore's FileWriter).
        .target(name: "DiscoImage", dependencies: ["DiscoCore", "_CImageCodecs"], swiftSettings: kernelFlags),
        // DiscoGAN models, losses, training loop, checkpoints, reports.
        .target(name: "DiscoGAN", dependencies: ["DiscoCore", "DiscoImage"], swiftSettings: kernelFlags),
        // The command-line tool.
        .executableTarget(
            name: "disco",
            dependencies: ["DiscoCore", "DiscoImage", "DiscoGAN",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: avx2 ? [.define("DISCO_AVX2")] : []
        ),
        .testTarget(name: "DiscoCoreTests", dependencies: ["DiscoCore"]),
        .testTarget(name: "DiscoImageTests", dependencies: ["DiscoImage"]),
        .testTarget(name: "DiscoGANTests", dependencies: ["DiscoGAN", "DiscoCore", "DiscoImage"]),
    ],
    swiftLanguageModes: [.v5]
)
