// The ingest pipeline behind `add` (and pull's seeding): read a file block by block, cut it
// into chunks, hash and compress them on both cores, append the new ones to packs.

import SLMFormats
import Foundation

/// One block of a file in memory; `start` is the file offset of its first byte. Unchecked: the
/// ingester hands a buffer to one stage at a time (filled, then hashed and compressed).
final class BlockBuffer: @unchecked Sendable {
    let memory: UnsafeMutableRawBufferPointer
    var start: UInt64 = 0
    var length = 0

    init(capacity: Int) { memory = .allocate(byteCount: capacity, alignment: 64) }
    deinit { memory.deallocate() }
}

/// Reads a file block by block and cuts it into chunks, restarting at segment boundaries and
/// noting which chunks lie inside one float tensor. Unchecked: used by one job at a time (the
/// prepare-next iteration of the ingester's parallel loop).
final class BlockCutter: @unchecked Sendable {
    let file: FileDescriptor
    let path: String
    let size: UInt64
    let cdc: FastCDC
    let capacity: Int
    private let boundaries: [UInt64]
    private let tensors: [(range: Range<UInt64>, dtype: String)]
    private let tensorInfos: [TensorInfo]
    private let deltaTarget: DeltaTarget?
    private let usableBase: (ChunkID) -> Bool
    private var position: UInt64 = 0
    private var nextBoundary = 1
    private var tensorCursor = 0

    init(file: FileDescriptor, path: String, size: UInt64, cdc: FastCDC, header: SafetensorsHeader?, capacity: Int,
         deltaTarget: DeltaTarget? = nil, usableBase: @escaping (ChunkID) -> Bool = { _ in false }) {
        self.deltaTarget = deltaTarget
        self.usableBase = usableBase
        tensorInfos = header?.tensors ?? []
        self.file = file
        self.path = path
        self.size = size
        self.cdc = cdc
        self.capacity = capacity
        boundaries = Segmenter.boundaries(fileSize: size, safetensors: header, minSize: cdc.parameters.minSize)
        tensors = header.map { st in st.tensors.map { ((st.dataStart + $0.begin)..<(st.dataStart + $0.end), $0.dtype) } } ?? []
    }

    private func layout(_ range: Range<UInt64>) -> FloatLayout? {
        CodecPolicy.floatLayout(for: range, in: tensors, cursor: &tensorCursor)
    }

    /// The base chunks a float chunk lines up with, when a delta against the base file is possible.
    private func deltaBases(_ range: Range<UInt64>, layout: FloatLayout?) -> (bases: [ChunkRef], offset: UInt32)? {
        guard let deltaTarget, let layout, range.count >= 4 * layout.elementSize, tensorCursor < tensors.count else { return nil }
        return deltaTarget.bases(for: range, in: tensorInfos[tensorCursor], tensorStart: tensors[tensorCursor].range.lowerBound, usable: usableBase)
    }

    /// Fills `buffer` with the bytes `previous` did not consume and as much of the file as fits,
    /// and cuts every chunk it can; empty when the file is done.
    func next(into buffer: BlockBuffer, after previous: BlockBuffer?) throws -> [ChunkIngester.Pending] {
        guard position < size else { return [] }
        var keep = 0
        if let previous {
            keep = Int(previous.start + UInt64(previous.length) - position)
            if keep > 0 {
                buffer.memory.baseAddress!.copyMemory(from: previous.memory.baseAddress! + Int(position - previous.start), byteCount: keep)
            }
        }
        buffer.start = position
        buffer.length = keep
        let want = min(capacity - keep, Int(size - (position + UInt64(keep))))
        if want > 0 {
            try file.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer.memory[keep..<keep + want]), count: want,
                           at: position + UInt64(keep))
            buffer.length += want
        }
        let bufferEnd = buffer.start + UInt64(buffer.length)
        let maxSize = cdc.parameters.maxSize
        var batch: [ChunkIngester.Pending] = []
        while position < size {
            while nextBoundary < boundaries.count && boundaries[nextBoundary] <= position { nextBoundary += 1 }
            let segmentEnd = nextBoundary < boundaries.count ? boundaries[nextBoundary] : size
            let end = min(segmentEnd, bufferEnd)
            let available = Int(end - position)
            if available < maxSize && end == bufferEnd && bufferEnd < size { break }
            let offset = Int(position - buffer.start)
            let n = cdc.cut(UnsafeRawBufferPointer(rebasing: buffer.memory[offset..<offset + available]))
            let range = position..<(position + UInt64(n))
            let l = layout(range)
            batch.append(ChunkIngester.Pending(start: offset, length: n, layout: l, delta: deltaBases(range, layout: l)))
            position += UInt64(n)
        }
        return batch
    }
}

/// Streams files through chunking, hashing and compression, using both cores: each batch of
/// chunks is hashed and compressed in parallel while one worker feeds the file's SHA-256.
package final class ChunkIngester {
    let store: Store
    let existing: ChunkIndex
    let directory: String
    let packTargetSize: UInt64
    let cdc: FastCDC
    let level: Int32
    /// When set, only these chunks are stored (seeding a pull from files already on disk).
    let wanted: (any ChunkIDMembership)?
    /// The version new float chunks are stored as deltas against, when that is smaller.
    let deltaBase: TreeObject?

    private var sink: PackSink!
    /// Delta records go to packs of their own: a delta set names them (Format.md §7.3).
    private var deltaSink: PackSink!
    /// Sealed packs, committed by the caller once the whole operation is ready to commit.
    private var sealed = SealedPacks()
    private var sealedDeltas = SealedPacks()
    /// Chunks written by this operation, so a repeat within it is stored once.
    private var written: SpilledChunkIDSet
    /// Chunks this ingest stored that the store did not hold.
    package private(set) var newChunks = 0
    private(set) var reusedChunks = 0
    private(set) var storedBytes: UInt64 = 0
    private(set) var reusedBytes: UInt64 = 0
    /// Chunks stored as delta records, and their record bytes.
    private(set) var deltaChunks = 0
    private(set) var deltaStoredBytes: UInt64 = 0
    private var processedBefore: UInt64 = 0
    /// Each file's chunk list, kept in the working directory as it is cut (Format.md §7.1's
    /// records), so memory does not grow with the file.
    private let chunkLists: ChunkListWriter

    static let blockSize = 16 << 20
    /// Bytes read per block; two blocks are in memory at once. Chunk boundaries do not depend on
    /// it (a block's uncut tail moves to the next), so a device seeding under a small memory
    /// budget finds the same chunks.
    let blockSize: Int

    /// An ingester writing new chunks of `store` (those `existing` lacks, and `wanted` wants when given) into packs in `directory`, cut by `chunker`, with deltas against `deltaBase` where they line up.
    package init(store: Store, existing: ChunkIndex, directory: String, packTargetSize: UInt64,
         chunker: ChunkerParameters, wanted: (any ChunkIDMembership)? = nil, deltaBase: TreeObject? = nil,
         blockSize: Int = ChunkIngester.blockSize, writeBatchBytes: Int = PackWriter.defaultWriteBatchBytes) throws {
        self.blockSize = blockSize
        self.deltaBase = deltaBase
        self.store = store
        self.existing = existing
        self.directory = directory
        self.packTargetSize = packTargetSize
        self.cdc = FastCDC(chunker)
        self.level = Int32(store.config.compressionLevel)
        self.wanted = wanted
        written = SpilledChunkIDSet(directory: directory)
        chunkLists = try ChunkListWriter(path: "\(directory)/chunk-lists-\(FileSystem.randomHex(8))")
        let sealed = self.sealed, sealedDeltas = self.sealedDeltas
        // Sealed packs wait here until the caller commits them; their index files hold the records.
        sink = PackSink(directory: directory, rolloverSize: packTargetSize, writeBatchBytes: writeBatchBytes) { packs in
            packs.forEach { $0.forgetEntries() }
            sealed.packs += packs
        }
        deltaSink = PackSink(directory: directory, rolloverSize: packTargetSize, writeBatchBytes: writeBatchBytes) { packs in
            packs.forEach { $0.forgetEntries() }
            sealedDeltas.packs += packs
        }
    }

    final class SealedPacks { var packs: [PackWriter] = [] }

    struct Pending {
        var start: Int  // offset in the buffer
        var length: Int
        var layout: FloatLayout?
        /// Base chunks (full records in the store) at the same element positions, if any.
        var delta: (bases: [ChunkRef], offset: UInt32)?
    }

    private struct Outcome {
        var id: ChunkID
        var encoded: EncodedChunk?
    }

    /// Reads, cuts, hashes and stores one file; returns its tree entry. `progress` hears bytes read.
    package func ingest(_ input: AddInput, progress: (UInt64) -> Void) throws -> FileEntry {
        chunkLists.discardUnfinished()
        let file = try FileDescriptor.openForReading(input.sourcePath)
        posix_fadvise(file.fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        let size = try file.size()
        guard size == input.size else { throw SLMError.input(path: input.sourcePath, problem: "file changed size while being added") }
        let existing = self.existing
        let cutter = BlockCutter(file: file, path: input.sourcePath, size: size, cdc: cdc, header: input.safetensors,
                                 capacity: blockSize + cdc.parameters.maxSize,
                                 deltaTarget: input.safetensors == nil ? nil : try deltaBase.flatMap { try DeltaTarget(bases: $0.deltaBaseFiles(for: input.treePath)) },
                                 usableBase: { existing.containsFull($0) })
        let sha = SHA256Hasher()
        // Two buffers: while one block's chunks are hashed and compressed, the next block is read
        // and cut into the other.
        var current = BlockBuffer(capacity: cutter.capacity)
        var spare = BlockBuffer(capacity: cutter.capacity)
        var batch = try cutter.next(into: current, after: nil)
        while !batch.isEmpty {
            let range = batch[0].start..<(batch[batch.count - 1].start + batch[batch.count - 1].length)
            var nextBatch: [Pending] = []
            let outcomes = try process(batch, buffer: UnsafeRawBufferPointer(current.memory), hashing: range, into: sha) {
                nextBatch = try cutter.next(into: spare, after: current)
            }
            for (pending, outcome) in zip(batch, outcomes) {
                try chunkLists.append(ChunkRef(id: outcome.id, rawLength: UInt32(pending.length)))
                if let wanted, !wanted.contains(outcome.id) { continue }
                if try existing.contains(outcome.id) || written.contains(outcome.id) {
                    reusedChunks += 1
                    reusedBytes += UInt64(pending.length)
                    continue
                }
                guard let encoded = outcome.encoded else {
                    throw SLMError.failed("internal: chunk \(outcome.id.hex) of \(input.sourcePath) was not encoded")
                }
                if encoded.codec == .delta {
                    try deltaSink.append(id: outcome.id, rawLength: UInt32(pending.length), encoded: encoded)
                    deltaChunks += 1
                    deltaStoredBytes += PackFormat.recordSize(UInt32(encoded.payload.count))
                } else {
                    try sink.append(id: outcome.id, rawLength: UInt32(pending.length), encoded: encoded)
                }
                try written.insert(outcome.id)
                newChunks += 1
                storedBytes += UInt64(PackFormat.recordHeaderSize + encoded.payload.count)
            }
            try sink.sealIfFull()
            try deltaSink.sealIfFull()
            progress(processedBefore + current.start + UInt64(range.upperBound))
            swap(&current, &spare)
            batch = nextBatch
        }
        processedBefore += size
        progress(processedBefore)
        return FileEntry(path: input.treePath, size: size, sha256: sha.finish(), chunks: try chunkLists.finishList(), safetensors: input.safetensors)
    }

    /// Hashes every chunk of the batch and compresses the ones the store lacks, in parallel with
    /// two other jobs: job 0 prepares the next block, job 1 feeds the file digest (which must see
    /// the bytes in order). Chunks go in contiguous runs, so neighbours reuse decoded base chunks.
    /// A chunk with base chunks is also encoded as a delta, kept when smaller than its full record;
    /// a base that cannot be read just means no delta.
    private func process(_ batch: [Pending], buffer: UnsafeRawBufferPointer, hashing range: Range<Int>,
                         into sha: SHA256Hasher, prepareNext: () throws -> Void) throws -> [Outcome] {
        let results = UnsafeMutableBufferPointer<Outcome>.allocate(capacity: batch.count)
        defer { results.deallocate() }
        nonisolated(unsafe) let out = results
        nonisolated(unsafe) let buffer = buffer
        nonisolated(unsafe) var prepareError: Error? = nil
        let existing = self.existing
        let written = self.written
        let wanted = self.wanted
        let level = self.level
        let store = self.store
        // Runs of about 8 chunks: small enough to keep both cores evenly busy.
        let runs = max(1, (batch.count + 7) / 8)
        try withoutActuallyEscaping(prepareNext) { prepare in
            nonisolated(unsafe) let prepare = prepare
            DispatchQueue.concurrentPerform(iterations: runs + 2) { job in
                if job == 0 {
                    do { try prepare() } catch { prepareError = error }
                    return
                }
                if job == 1 {
                    sha.update(UnsafeRawBufferPointer(rebasing: buffer[range]))
                    return
                }
                let run = job - 2
                let cache = DecodedChunkCache()
                for i in (batch.count * run / runs)..<(batch.count * (run + 1) / runs) {
                    let p = batch[i]
                    let bytes = UnsafeRawBufferPointer(rebasing: buffer[p.start..<p.start + p.length])
                    let id = ChunkID(of: bytes)
                    var encoded: EncodedChunk? = nil
                    // A run that cannot be read here only costs encoding a chunk the serial
                    // step then finds written; that step reads it again and throws.
                    if !existing.contains(id) && !((try? written.contains(id)) ?? false) && (wanted?.contains(id) ?? true) {
                        let full = ChunkEncoder.encode(bytes, level: level, layout: p.layout)
                        encoded = full
                        // A base that cannot be read yields no delta: the chunk is stored full.
                        if let d = p.delta, let layout = p.layout,
                           let base = try? store.baseReader(index: existing, for: id, cache: cache)(d.bases, d.offset, p.length, "delta base of a new chunk") {
                            let delta = base.withUnsafeBytes {
                                DeltaCodec.encode(new: bytes, base: $0, layout: layout, bases: d.bases, baseOffset: d.offset,
                                                  fullLength: UInt32(full.payload.count))
                            }
                            if delta.count < full.payload.count { encoded = EncodedChunk(codec: .delta, payload: delta) }
                        }
                    }
                    (out.baseAddress! + i).initialize(to: Outcome(id: id, encoded: encoded))
                }
            }
            if let prepareError { throw prepareError }
        }
        let array = Array(results)
        results.baseAddress!.deinitialize(count: batch.count)
        return array
    }

    /// Seals the open packs; returns every non-empty pack written (full records, delta records),
    /// durable in the working directory.
    package func finish() throws -> (full: [PackWriter], deltas: [PackWriter]) {
        try sink.seal()
        try deltaSink.seal()
        return (sealed.packs, sealedDeltas.packs)
    }
}
