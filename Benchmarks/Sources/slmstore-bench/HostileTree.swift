// A version whose tree lists many chunk ids (#42's 47 MiB tree of 2.5 M ids): written straight
// into a path remote (objects and version ref), so the peak memory of a pull that plans it can
// be measured. The ids are random, so the remote holds none of them and the pull must refuse.

import Foundation
import SLMStoreKit
import SLMSynthetic

func makeHostileTree(remote root: String, label: String, chunks: Int) throws -> [String: Any] {
    guard case let .exact(name, version) = try VersionRef.parse(label) else { throw SLMError.argument("hostile-tree: NAME@VERSION") }
    var rng = SplitMix(7)
    var refs: [ChunkRef] = []
    refs.reserveCapacity(chunks)
    for _ in 0..<chunks {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<16 { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        refs.append(ChunkRef(id: ChunkID(of: bytes), rawLength: 1024))
    }
    let file = FileEntry(path: "weights.bin", size: UInt64(chunks) * 1024, sha256: SHA256Hasher.hash([]), chunks: refs, safetensors: nil)
    let tree = try TreeObject(files: [file]).encoded()
    let treeID = SHA256Hasher.hash(tree)
    let object = VersionObject(name: name.value, version: version, tree: treeID, parent: nil, created: Timestamp.now(), addedBy: "bench", tool: "slmstore-bench")
    let versionBytes = object.encoded()
    let versionID = SHA256Hasher.hash(versionBytes)
    let backend = LocalBackend(root: root)
    try backend.write(RemoteLayout.objectPath(treeID), bytes: tree)
    try backend.write(RemoteLayout.objectPath(versionID), bytes: versionBytes)
    try backend.write(RemoteLayout.versionRefPath(name, version), bytes: Array((versionID.hex + "\n").utf8))
    return ["tree_bytes": tree.count, "chunks": chunks, "version_id": versionID.hex]
}
