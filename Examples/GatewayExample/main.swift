// Example: an inference server's view of slmstore. Opens a model through the gateway, reads the
// safetensors header of the active version, and follows stage moves (hot-swap) if asked.
//
//   swift run gateway-example --store DIR intent-classifier production [--watch SECONDS]
//   swift run gateway-example --installed /var/lib/slm intent-classifier

import Foundation
import SLMStoreKit

var args = Array(CommandLine.arguments.dropFirst())
@MainActor func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    let v = args[i + 1]
    args.removeSubrange(i...i + 1)
    return v
}
let storePath = option("--store")
let installed = option("--installed")
let watch = option("--watch").flatMap(Double.init)
guard let model = args.first else {
    FileHandle.standardError.write("usage: gateway-example (--store DIR | --installed DIR) MODEL [SELECTOR] [--watch SECONDS]\n".data(using: .utf8)!)
    exit(2)
}
let selector = args.count > 1 ? args[1] : "production"

do {
    let gateway: ModelGateway
    if let installed {
        gateway = ModelGateway(source: .installed(root: installed))
    } else {
        let store = try Store.open(at: storePath ?? ProcessInfo.processInfo.environment["SLMSTORE_DIR"] ?? ".")
        gateway = ModelGateway(source: .store(store, cache: store.root + "/cache/gateway"))
    }
    @Sendable func describe(_ h: ModelHandle) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: h.directory).filter { $0.hasSuffix(".safetensors") }.sorted()
        print("\(h.name)@\(h.version) at \(h.directory)")
        for f in files {
            let header = try SafetensorsHeader.read(path: h.path(f))
            print("  \(f): \(header.tensors.count) tensors, header \(header.headerLength) bytes")
            for t in header.tensors.prefix(5) { print("    \(t.name) \(t.dtype) \(t.shape)") }
            if header.tensors.count > 5 { print("    ...") }
        }
    }
    let handle = installed != nil ? try gateway.current(model) : try gateway.current(model, defaultSelector: selector)
    try describe(handle)
    if let watch {
        gateway.onSwitch = { m, old, new in print("switched \(m): \(old ?? "none") -> \(new)") }
        gateway.startWatching(interval: watch)
        while true { Thread.sleep(forTimeInterval: 3600) }
    }
} catch {
    FileHandle.standardError.write("gateway-example: error: \(error)\n".data(using: .utf8)!)
    exit(1)
}
