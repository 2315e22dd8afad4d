// `diff`: what changed between two versions, file by file and tensor by tensor, and exactly
// which chunks a holder of the first must fetch to have the second.

import SLMFormats
import Foundation

/// What changed between two versions, file by file and tensor by tensor, and what a holder of the
/// first fetches to get the second.
public struct VersionDiff: Sendable {
    /// What happened to a file.
    public enum Status: String, Sendable { case unchanged, changed, added, removed }

    /// One tensor that differs.
    public struct TensorChange: Sendable {
        /// The tensor's name.
        public var name: String
        /// What changed: "data", "added", "removed", "dtype" or "shape".
        public var change: String
        /// The tensor's size in the second version (in the first, when removed).
        public var bytes: UInt64
        /// A short human description (old and new dtype or shape, ...).
        public var detail: String
    }

    /// One file that is in either version.
    public struct FileChange: Sendable {
        /// The file's path in the trees.
        public var path: String
        /// Unchanged, changed, added or removed.
        public var status: Status
        /// Its size in the first version, if it is there.
        public var oldSize: UInt64?
        /// Its size in the second version, if it is there.
        public var newSize: UInt64?
        /// The tensors that differ (weights files).
        public var tensors: [TensorChange]
        /// Whether the weights file's header differs.
        public var headerChanged: Bool
        /// Whether only the header's metadata differs (every tensor the same).
        public var metadataOnly: Bool
    }

    /// Every file of either version, by path.
    public var files: [FileChange]
    /// Chunks of the second version the first does not have.
    public var chunksToFetch: Int
    /// Record bytes (28-byte header plus stored payload) of the chunks to fetch.
    public var bytesToFetch: UInt64
    /// Chunks counted at the size of a delta record against the first version.
    public var deltaChunks: Int
    /// Record bytes a device holding nothing fetches: full records of every chunk of the second.
    public var fullBytesToFetch: UInt64
    /// Raw bytes of the chunks to fetch.
    public var rawBytesToFetch: UInt64
    /// Raw bytes of the second version.
    public var totalRawBytes: UInt64
    /// Raw bytes of the second version whose chunks the first already has.
    public var rawBytesPresent: UInt64
}

extension Store {
    /// The difference from `old` to `new`, sizing each chunk to fetch by its record in `index` (or
    /// by `deltas`, the delta record sizes a holder of `old` would fetch instead).
    public func diff(from old: TreeObject, to new: TreeObject, index: ChunkIndex, deltas: [ChunkID: UInt32] = [:]) throws -> VersionDiff {
        var files: [VersionDiff.FileChange] = []
        let oldByPath = Dictionary(uniqueKeysWithValues: old.files.map { ($0.path, $0) })
        let newByPath = Dictionary(uniqueKeysWithValues: new.files.map { ($0.path, $0) })
        for path in Set(oldByPath.keys).union(newByPath.keys).sorted() {
            switch (oldByPath[path], newByPath[path]) {
            case let (o?, n?):
                if o.sha256 == n.sha256 && o.size == n.size {
                    files.append(.init(path: path, status: .unchanged, oldSize: o.size, newSize: n.size, tensors: [], headerChanged: false, metadataOnly: false))
                } else {
                    var change = VersionDiff.FileChange(path: path, status: .changed, oldSize: o.size, newSize: n.size, tensors: [], headerChanged: false, metadataOnly: false)
                    if let os = o.safetensors, let ns = n.safetensors {
                        try compareTensors(o, os, n, ns, index: index, into: &change)
                    }
                    files.append(change)
                }
            case let (nil, n?):
                files.append(.init(path: path, status: .added, oldSize: nil, newSize: n.size, tensors: [], headerChanged: false, metadataOnly: false))
            case let (o?, nil):
                files.append(.init(path: path, status: .removed, oldSize: o.size, newSize: nil, tensors: [], headerChanged: false, metadataOnly: false))
            default: break
            }
        }
        var have = Set<ChunkID>()
        for f in old.files { try f.chunks.forEach { have.insert($0.id) } }
        var fetch = Set<ChunkID>(), all = Set<ChunkID>()
        var bytes: UInt64 = 0, raw: UInt64 = 0, total: UInt64 = 0, present: UInt64 = 0, full: UInt64 = 0
        var deltaChunks = 0
        for f in new.files {
            var refs = f.chunks.makeIterator()
            while let c = try refs.next() {
                total += UInt64(c.rawLength)
                all.insert(c.id)
                if have.contains(c.id) { present += UInt64(c.rawLength); continue }
                guard fetch.insert(c.id).inserted else { continue }
                raw += UInt64(c.rawLength)
                guard let fullLength = fullStoredLength(of: c.id, index: index) else {
                    throw SLMError.damaged(path: root, problem: "chunk \(c.id.hex) of file \(f.path) is missing from the store")
                }
                // The same choice pull makes: the delta when it is smaller than the full record.
                if let d = deltas[c.id], d < fullLength {
                    bytes += PackFormat.recordSize(d)
                    deltaChunks += 1
                } else {
                    bytes += PackFormat.recordSize(fullLength)
                }
            }
        }
        for id in all { if let l = fullStoredLength(of: id, index: index) { full += PackFormat.recordSize(l) } }
        return VersionDiff(files: files, chunksToFetch: fetch.count, bytesToFetch: bytes, deltaChunks: deltaChunks, fullBytesToFetch: full,
                           rawBytesToFetch: raw, totalRawBytes: total, rawBytesPresent: present)
    }

    /// Tensor-level comparison. A tensor whose bytes start a segment is compared by its chunk
    /// ids; one that shares a segment with neighbours is compared by hashing its bytes.
    private func compareTensors(_ o: FileEntry, _ os: SafetensorsHeader, _ n: FileEntry, _ ns: SafetensorsHeader,
                                index: ChunkIndex, into change: inout VersionDiff.FileChange) throws {
        let oldTensors = Dictionary(uniqueKeysWithValues: os.tensors.map { ($0.name, $0) })
        let newTensors = Dictionary(uniqueKeysWithValues: ns.tensors.map { ($0.name, $0) })
        var changes: [VersionDiff.TensorChange] = []
        var dataChanged = false
        for t in ns.tensors {
            guard let ot = oldTensors[t.name] else {
                changes.append(.init(name: t.name, change: "added", bytes: t.byteCount, detail: "\(t.dtype) \(t.shape)"))
                dataChanged = true
                continue
            }
            if ot.dtype != t.dtype {
                changes.append(.init(name: t.name, change: "dtype", bytes: t.byteCount, detail: "\(ot.dtype) -> \(t.dtype)"))
                dataChanged = true
            } else if ot.shape != t.shape {
                changes.append(.init(name: t.name, change: "shape", bytes: t.byteCount, detail: "\(ot.shape) -> \(t.shape)"))
                dataChanged = true
            } else if try tensorDigest(o, os, ot, index: index) != tensorDigest(n, ns, t, index: index) {
                changes.append(.init(name: t.name, change: "data", bytes: t.byteCount, detail: ""))
                dataChanged = true
            }
        }
        for t in os.tensors where newTensors[t.name] == nil {
            changes.append(.init(name: t.name, change: "removed", bytes: t.byteCount, detail: "\(t.dtype) \(t.shape)"))
            dataChanged = true
        }
        change.tensors = changes
        let oldHeader = try chunksCovering(o, 0..<os.dataStart)
        let newHeader = try chunksCovering(n, 0..<ns.dataStart)
        change.headerChanged = oldHeader.map(\.id) != newHeader.map(\.id)
        change.metadataOnly = change.headerChanged && !dataChanged && os.tensors.map { [$0.begin, $0.end] } == ns.tensors.map { [$0.begin, $0.end] }
    }

    /// Chunks overlapping `range` of the file, with their file offsets.
    private func chunksCovering(_ f: FileEntry, _ range: Range<UInt64>) throws -> [(id: ChunkID, start: UInt64, length: UInt32)] {
        var out: [(ChunkID, UInt64, UInt32)] = []
        var offset: UInt64 = 0
        var refs = f.chunks.makeIterator()
        while let c = try refs.next() {
            let end = offset + UInt64(c.rawLength)
            if end > range.lowerBound && offset < range.upperBound { out.append((c.id, offset, c.rawLength)) }
            if offset >= range.upperBound { break }
            offset = end
        }
        return out
    }

    /// An identity for a tensor's bytes: its chunk ids when its range is exactly covered by whole
    /// chunks, else the SHA-256 of the bytes, read from the store.
    private func tensorDigest(_ f: FileEntry, _ h: SafetensorsHeader, _ t: TensorInfo, index: ChunkIndex) throws -> [UInt8] {
        let range = (h.dataStart + t.begin)..<(h.dataStart + t.end)
        if range.isEmpty { return [] }
        let covering = try chunksCovering(f, range)
        if let first = covering.first, let last = covering.last, first.start == range.lowerBound,
           last.start + UInt64(last.length) == range.upperBound {
            return [0] + covering.flatMap { $0.id.canonicalBytes }
        }
        let sha = SHA256Hasher()
        for c in covering {
            guard let loc = index.location(of: c.id) else {
                throw SLMError.damaged(path: root, problem: "chunk \(c.id.hex) of \(f.path) is missing from the store")
            }
            var buf = [UInt8](repeating: 0, count: Int(c.length))
            try buf.withUnsafeMutableBytes { try readChunk(c.id, at: loc, into: $0, index: index) }
            let lo = max(range.lowerBound, c.start) - c.start
            let hi = min(range.upperBound, c.start + UInt64(c.length)) - c.start
            sha.update(Array(buf[Int(lo)..<Int(hi)]))
        }
        return [1] + sha.finish().bytes
    }
}
