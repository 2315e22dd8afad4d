// The delta coder's own rebuild speed: every chunk of a version that is stored as a delta
// record, decoded from its base and hash-checked in memory, with no file written or SHA-256'd.

import Dispatch
import Foundation
import SLMStoreKit
import Synchronization

/// Decodes the delta-record chunks of `version` in `store` on every core, in contiguous runs
/// as checkout does (neighbours share base chunks); returns the bytes rebuilt and the seconds.
func rebuildSpeed(store path: String, version: String) throws -> [String: Any] {
    let store = try Store.open(at: path)
    let tree = try store.readTree(try store.resolve(version).object.tree)
    let index = try store.loadChunkIndex()
    var deltas: [(ChunkID, ChunkLocation)] = []
    var seen = Set<ChunkID>()
    for file in tree.files {
        var refs = file.chunks.makeIterator()
        while let ref = try refs.next() {
            guard let loc = index.location(of: ref.id), loc.codec == .delta, seen.insert(ref.id).inserted else { continue }
            deltas.append((ref.id, loc))
        }
    }
    let items = deltas
    let bytes = items.reduce(0) { $0 + Int($1.1.rawLength) }
    let largest = items.reduce(1) { max($0, Int($1.1.rawLength)) }
    let runs = max(1, (items.count + 31) / 32)
    let failures = Mutex<[String]>([])
    let started = DispatchTime.now().uptimeNanoseconds
    DispatchQueue.concurrentPerform(iterations: runs) { run in
        let cache = DecodedChunkCache()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: largest, alignment: 64)
        defer { out.deallocate() }
        for j in (items.count * run / runs)..<(items.count * (run + 1) / runs) {
            do {
                try store.readChunk(items[j].0, at: items[j].1, into: out, index: index, cache: cache)
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    if let first = failures.withLock({ $0.first }) { throw SLMError.failed(first) }
    return ["delta_chunks": items.count, "bytes": bytes, "seconds": seconds, "mb_s": Double(bytes) / seconds / 1e6]
}
