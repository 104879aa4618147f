// swift-tools-version: 6.0
// disttrain: data-parallel fine-tuning of Hugging Face transformer models over MPI on CPU clusters.
import PackageDescription

let package = Package(
    name: "disttrain",
    products: [
        .executable(name: "disttrain", targets: ["disttrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
    ],
    targets: [
        // System libraries found through pkg-config; no unsafe flags.
        .systemLibrary(name: "COpenMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // The only place mpi.h is included (OpenMPI's handles are cast macros Swift cannot import).
        .target(name: "CMPI", dependencies: ["COpenMPI"]),
        // Hot element-wise kernels in C (vectorised, run-time dispatched by CPU feature).
        .target(name: "CKernels"),
        // Communicator protocol, MPI and world-size-1 implementations, data sharding, gradient all-reduce.
        // The one seeded generator (SplitMix64), shared by every target that draws random numbers.
        .target(name: "SplitMix"),
        .target(name: "Dist", dependencies: ["CMPI", "CKernels", "SplitMix"]),
        // WordPiece and byte-level BPE tokenizers, identical to Hugging Face `tokenizers`.
        .target(name: "Tokenizers"),
        // Layers with forward/backward, BERT/DistilBERT assemblies, losses, AdamW, safetensors and config I/O.
        .target(name: "Model", dependencies: ["CBLAS", "CKernels", "SplitMix"]),
        // Data loading, the training loop, evaluation, metrics, prediction.
        .target(name: "Training", dependencies: [
            "Model", "Dist", "Tokenizers", "SplitMix",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The command-line interface: maps flags onto library configs, nothing more.
        .executableTarget(name: "disttrain", dependencies: [
            "Training", "Model", "Dist", "Tokenizers",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // What the test targets share: repository paths, the binary locator, fixture copies, temp folders, a seeded
        // RNG and assertClose (imports XCTest; only test targets depend on it).
        .target(name: "TestSupport", dependencies: ["SplitMix"], path: "Tests/TestSupport"),
        // Test-only: exercises Dist under real mpirun for DistTests/MPIRunTests (not a product, not in `disttrain`).
        .executableTarget(name: "disttrain-comm-check", dependencies: [
            "Dist", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Tests/CommCheck"),
        .testTarget(name: "DistTests", dependencies: ["Dist", "SplitMix", "disttrain-comm-check"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "TestSupport", "SplitMix"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "TestSupport", "SplitMix"], resources: [.copy("Fixtures")]),
        // The loop on thread-ranks reads the model fixtures of ModelTests from the repository (TestSupport.TestPaths).
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Dist", "Tokenizers", "TestSupport", "SplitMix"]),
        // End-to-end: runs the built `disttrain` binary (and real `mpirun`) as a subprocess.
        .testTarget(name: "CLITests", dependencies: ["disttrain", "TestSupport", "SplitMix"]),
    ]
)
