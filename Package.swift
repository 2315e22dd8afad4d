// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "slmstore",
    products: [
        .library(name: "SLMStoreKit", targets: ["SLMStoreKit"]),
        .executable(name: "slmstore", targets: ["slmstore"]),
    ],
    targets: [
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", path: "Sources/CXXHash", pkgConfig: "libxxhash",
                       providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        // The library, one target per layer (ARCHITECTURE.md): a target sees only those it lists,
        // so a dependency that runs up a layer does not compile.
        .target(name: "SLMFormats", dependencies: ["CZstd", "CXXHash", "COpenSSL"]),
        .target(name: "SLMLocalStore", dependencies: ["SLMFormats", "CZstd", "CXXHash", "COpenSSL"]),
        .target(name: "SLMRemote", dependencies: ["SLMFormats", "SLMLocalStore", "CCurl", "COpenSSL"]),
        .target(name: "SLMDevice", dependencies: ["SLMFormats", "SLMLocalStore", "SLMRemote"]),
        .target(name: "SLMPages", dependencies: ["SLMFormats", "SLMLocalStore", "SLMRemote"]),
        // What a program links: every layer, re-exported.
        .target(name: "SLMStoreKit", dependencies: ["SLMFormats", "SLMLocalStore", "SLMRemote", "SLMDevice", "SLMPages"]),
        // Synthetic models for the demo, the tests and the benchmarks: not part of the store.
        .target(name: "SLMSynthetic", dependencies: ["SLMStoreKit"]),
        // The command layer uses C stdio globals freely; Swift 5 mode keeps that from being an error.
        .executableTarget(name: "slmstore", dependencies: ["SLMStoreKit", "SLMSynthetic"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "slmstore-bench", dependencies: ["SLMStoreKit", "SLMSynthetic"], path: "Benchmarks/Sources/slmstore-bench"),
        .executableTarget(name: "gateway-example", dependencies: ["SLMStoreKit"], path: "Examples/GatewayExample"),
        // Shared by both test suites: scratch directories, the CLI runner, nginx and the fault proxy.
        .target(name: "SLMTestSupport", dependencies: ["SLMStoreKit", "SLMSynthetic"], path: "Tests/Support"),
        // Fast, in-process: formats, codecs, planners, backends on real files (seconds).
        .testTarget(name: "SLMStoreKitUnitTests", dependencies: ["SLMStoreKit", "SLMFormats", "SLMLocalStore", "SLMRemote", "SLMDevice", "SLMPages", "SLMSynthetic", "SLMTestSupport"], path: "Tests/UnitTests"),
        // Whole processes and real servers: the CLI, nginx, moto, SIGKILL, concurrency.
        .testTarget(name: "SLMStoreKitIntegrationTests", dependencies: ["SLMStoreKit", "SLMFormats", "SLMLocalStore", "SLMRemote", "SLMDevice", "SLMPages", "SLMSynthetic", "SLMTestSupport"],
                    path: "Tests/IntegrationTests"),
    ]
)
