// Writing delta records (codec 3) for the chunks of one version against another: which chunks
// qualify (inside a float tensor whose name, dtype and shape match a tensor of the base), where
// their base bytes lie, and whether the delta beats the chunk's full record.

import SLMFormats
import Foundation
import Synchronization

/// What delta encoding did during an add or a push.
public struct DeltaStats: Sendable {
    /// Delta records written.
    public var chunks = 0
    /// Record bytes (header and payload) of those records.
    public var storedBytes: UInt64 = 0
}

/// One chunk of the target lined up with the base bytes at the same element positions.
package struct DeltaCandidate {
    /// The target chunk.
    package var id: ChunkID
    /// Its raw length in bytes.
    package var rawLength: Int
    var file: Int           // index into the target tree's files
    var offset: UInt64      // file offset of the chunk in the target
    var layout: FloatLayout
    var bases: [ChunkRef]
    var baseOffset: UInt32
}

extension TreeObject {
    /// The files of this (base) version a target file at `path` is lined up with, tensors
    /// matched by name: the file at the same path first, then every other weight file, so a
    /// tensor that moved to another shard (`model-0000N-of-0000M.safetensors`) or a renamed
    /// model file still finds its base.
    func deltaBaseFiles(for path: String) -> [FileEntry] {
        let weights = files.filter { $0.safetensors != nil }
        guard let same = file(path), same.safetensors != nil else { return weights }
        return [same] + weights.filter { $0.path != path }
    }
}

/// The files of the base version, prepared for lining chunks of one target file up with them.
struct DeltaTarget {
    private struct BaseFile {
        let header: SafetensorsHeader
        /// The base file's chunks, held: lining up looks them up by position, over and over.
        let chunks: [ChunkRef]
        /// File offset of each base chunk, plus the file size.
        let starts: [UInt64]
    }
    private let files: [BaseFile]
    /// Tensor name -> the first base file (in `deltaBaseFiles` order) that has it.
    private let tensors: [String: (file: Int, info: TensorInfo)]

    init?(bases: [FileEntry]) throws {
        var files: [BaseFile] = []
        var byName: [String: (file: Int, info: TensorInfo)] = [:]
        for base in bases {
            guard let header = base.safetensors else { continue }
            for t in header.tensors where byName[t.name] == nil { byName[t.name] = (files.count, t) }
            let chunks = try base.chunks.refs()
            var starts: [UInt64] = []
            starts.reserveCapacity(chunks.count + 1)
            var at: UInt64 = 0
            for c in chunks { starts.append(at); at += UInt64(c.rawLength) }
            starts.append(at)
            files.append(BaseFile(header: header, chunks: chunks, starts: starts))
        }
        guard !files.isEmpty else { return nil }
        self.files = files
        tensors = byName
    }

    /// The base chunks holding the bytes at the same element positions as `range` (file offsets
    /// of a chunk lying wholly in `tensor`, which starts at `tensorStart`), and the offset into
    /// the first; nil unless a base file has a tensor of the same name, dtype and shape, the
    /// range needs at most `DeltaHeader.maxBases` chunks, and `usable` accepts each of them.
    func bases(for range: Range<UInt64>, in tensor: TensorInfo, tensorStart: UInt64,
               usable: (ChunkID) -> Bool) -> (bases: [ChunkRef], offset: UInt32)? {
        guard let (fi, bt) = tensors[tensor.name], bt.dtype == tensor.dtype, bt.shape == tensor.shape else { return nil }
        let base = files[fi]
        let b0 = base.header.dataStart + bt.begin + (range.lowerBound - tensorStart)
        let b1 = b0 + UInt64(range.count)
        let starts = base.starts, chunks = base.chunks
        guard b1 <= starts[starts.count - 1] else { return nil }
        // The last base chunk starting at or before b0, then forward until b1 is covered.
        var lo = 0, hi = chunks.count
        while lo + 1 < hi { let mid = (lo + hi) / 2; if starts[mid] <= b0 { lo = mid } else { hi = mid } }
        var refs: [ChunkRef] = []
        var k = lo
        while k < chunks.count && starts[k] < b1 {
            guard refs.count < DeltaHeader.maxBases, usable(chunks[k].id) else { return nil }
            refs.append(chunks[k]); k += 1
        }
        guard !refs.isEmpty, starts[k] >= b1 else { return nil }
        return (refs, UInt32(b0 - starts[lo]))
    }
}

/// Which chunks of a version line up with a base version's tensors (pure: trees in, candidates out).
package enum DeltaPlanner {
    /// The chunks of `target` that `base` lacks and that can be expressed against it, each with
    /// its base chunks. Only a chunk wholly inside one BF16/F16/F32 tensor qualifies, and only
    /// when a weight file of the base (the same path first) has a tensor of the same name,
    /// dtype and shape.
    package static func candidates(target: TreeObject, base: TreeObject, usable: (ChunkID) -> Bool = { _ in true }) throws -> [DeltaCandidate] {
        var baseChunks = Set<ChunkID>()
        for f in base.files { try f.chunks.forEach { baseChunks.insert($0.id) } }
        var seen = Set<ChunkID>()
        var out: [DeltaCandidate] = []
        for (fi, f) in target.files.enumerated() {
            guard let st = f.safetensors, let b = try DeltaTarget(bases: base.deltaBaseFiles(for: f.path)) else { continue }
            var offset: UInt64 = 0
            var ti = 0
            var refs = f.chunks.makeIterator()
            while let c = try refs.next() {
                defer { offset += UInt64(c.rawLength) }
                guard !baseChunks.contains(c.id), !seen.contains(c.id) else { continue }
                let range = offset..<(offset + UInt64(c.rawLength))
                while ti < st.tensors.count && st.dataStart + st.tensors[ti].end <= range.lowerBound { ti += 1 }
                guard ti < st.tensors.count else { continue }
                let t = st.tensors[ti]
                let tStart = st.dataStart + t.begin
                guard tStart <= range.lowerBound, range.upperBound <= st.dataStart + t.end,
                      let layout = CodecPolicy.floatLayout(dtype: t.dtype, phase: Int((range.lowerBound - tStart) % 4)),
                      c.rawLength >= UInt32(4 * layout.elementSize),
                      let (refs, baseOffset) = b.bases(for: range, in: t, tensorStart: tStart, usable: usable) else { continue }
                seen.insert(c.id)
                out.append(DeltaCandidate(id: c.id, rawLength: Int(c.rawLength), file: fi, offset: range.lowerBound,
                                          layout: layout, bases: refs, baseOffset: baseOffset))
            }
        }
        return out
    }
}

extension Store {
    /// Encodes the candidates on both cores and appends each delta that is smaller than the
    /// chunk's full record to `sink`. `target` reads a candidate's bytes (nil to skip it);
    /// `fullStored` gives the stored length of the chunk's full record.
    package func writeDeltas(_ candidates: [DeltaCandidate], index: ChunkIndex, sink: PackSink,
                     target: @escaping @Sendable (DeltaCandidate) throws -> [UInt8]?,
                     fullStored: @escaping @Sendable (ChunkID) -> UInt32?, progress: ((Int) -> Void)? = nil) throws -> DeltaStats {
        try encodeDeltas(candidates, index: index, target: target, fullStored: fullStored, progress: progress) { c, payload in
            try sink.append(id: c.id, rawLength: UInt32(c.rawLength), encoded: EncodedChunk(codec: .delta, payload: payload))
        } endOfBatch: {
            try sink.sealIfFull()
        }
    }

    /// Encodes the candidates on both cores; `emit` receives each delta smaller than the chunk's
    /// full record, in candidate order.
    func encodeDeltas(_ candidates: [DeltaCandidate], index: ChunkIndex,
                      target: @escaping @Sendable (DeltaCandidate) throws -> [UInt8]?,
                      fullStored: @escaping @Sendable (ChunkID) -> UInt32?, progress: ((Int) -> Void)? = nil,
                      emit: (DeltaCandidate, [UInt8]) throws -> Void, endOfBatch: () throws -> Void = {}) throws -> DeltaStats {
        var stats = DeltaStats()
        let batchSize = 64
        var k = 0
        while k < candidates.count {
            let batch = Array(candidates[k..<min(k + batchSize, candidates.count)])
            k += batch.count
            let results = UnsafeMutableBufferPointer<Result<[UInt8]?, Error>>.allocate(capacity: batch.count)
            defer { results.deallocate() }
            nonisolated(unsafe) let out = results
            // Each worker takes a contiguous run, so neighbouring chunks reuse decoded bases.
            let workers = min(batch.count, max(1, ProcessInfo.processInfo.activeProcessorCount))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let cache = DecodedChunkCache()
                let lo = batch.count * w / workers, hi = batch.count * (w + 1) / workers
                for i in lo..<hi {
                    let c = batch[i]
                    let r = Result<[UInt8]?, Error> {
                        guard let new = try target(c) else { return nil }
                        let base = try self.baseReader(index: index, for: c.id, cache: cache, throughDeltas: true)(c.bases, c.baseOffset, c.rawLength, "delta base of chunk \(c.id.hex)")
                        return new.withUnsafeBytes { n in
                            base.withUnsafeBytes { b in
                                DeltaCodec.encode(new: n, base: b, layout: c.layout, bases: c.bases, baseOffset: c.baseOffset,
                                                  fullLength: fullStored(c.id) ?? 0)
                            }
                        }
                    }
                    (out.baseAddress! + i).initialize(to: r)
                }
            }
            defer { results.baseAddress!.deinitialize(count: batch.count) }
            for (i, c) in batch.enumerated() {
                guard let payload = try results[i].get() else { continue }
                if let full = fullStored(c.id), payload.count >= Int(full) { continue }
                try emit(c, payload)
                stats.chunks += 1
                stats.storedBytes += PackFormat.recordSize(UInt32(payload.count))
            }
            try endOfBatch()
            progress?(k)
        }
        return stats
    }
}

extension Store {
    /// Stored length of a chunk's full record: its own, or for a chunk stored only as a delta, the
    /// length its writer recorded (what `push` sends for it).
    public func fullStoredLength(of id: ChunkID, index: ChunkIndex) -> UInt32? {
        if let loc = index.fullLocation(of: id) { return loc.storedLength }
        for loc in index.deltaLocations(of: id) {
            // A copy whose header cannot be read says nothing; the next may.
            if let h = try? deltaHeader(at: loc), h.fullLength > 0 { return h.fullLength }
        }
        return nil
    }

    /// Stored length of the smallest delta record, per chunk, that rebuilds `target`'s chunks
    /// from `base`'s: from this store's delta set when it has one, else computed now (what
    /// `push` writes against a parent or a staged version).
    public func deltaSizes(target: ResolvedVersion, base: ResolvedVersion, index: ChunkIndex) throws -> [ChunkID: UInt32] {
        if let set = try deltaSet(target: target.id, base: base.id) {
            var out: [ChunkID: UInt32] = [:]
            for pack in set.packs where FileSystem.exists(packIndexPath(pack)) {
                for e in try readPackIndex(pack).entries where e.codec == .delta {
                    out[e.id] = min(out[e.id] ?? .max, e.storedLength)
                }
            }
            return out
        }
        guard target.name == base.name else { return [:] }
        let candidates = try DeltaPlanner.candidates(target: try readTree(target.object.tree), base: try readTree(base.object.tree),
                                                 usable: { index.contains($0) })
        let sizes = Mutex<[ChunkID: UInt32]>([:])
        let fullLengths = Dictionary(candidates.map { ($0.id, fullStoredLength(of: $0.id, index: index)) }, uniquingKeysWith: { a, _ in a })
        _ = try encodeDeltas(candidates, index: index, target: { [self] c in
            guard let loc = index.location(of: c.id) else { return nil }
            var out = [UInt8](repeating: 0, count: c.rawLength)
            try out.withUnsafeMutableBytes { try self.readChunk(c.id, at: loc, into: $0, index: index) }
            return out
        }, fullStored: { fullLengths[$0] ?? nil }) { c, payload in
            sizes.withLock { $0[c.id] = UInt32(payload.count) }
        }
        return sizes.withLock { $0 }
    }
}
