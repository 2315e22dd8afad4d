// `add`: turn files into chunks, compress the new ones into packs in a private working
// directory, then commit packs, tree, version and ref in that order under the refs lock.

import Foundation

/// One file to add: where it is read from and the path it gets in the tree.
public struct AddInput: Sendable {
    public var treePath: String
    public var sourcePath: String
    public var size: UInt64
    public var safetensors: SafetensorsHeader?
}

public struct AddResult: Sendable {
    public var name: ModelName
    public var version: SemVer
    public var versionID: SHA256Digest
    public var treeID: SHA256Digest
    public var inputBytes: UInt64
    /// New compressed bytes written into packs (payload and record headers).
    public var storedBytes: UInt64
    public var newChunks: Int
    public var reusedChunks: Int
    /// Raw bytes of the input that were already stored (deduplicated).
    public var reusedBytes: UInt64
    public var files: Int
    /// True when the same version with the same content already existed (nothing written).
    public var alreadyPresent: Bool
    public var seconds: Double
}

public struct AddOptions: Sendable {
    public var card: JSONValue?
    public var dependencies: [Dependency] = []
    /// Called with (bytes processed, total bytes) as work advances.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    /// Packs are closed once they reach this size.
    public var packTargetSize: UInt64 = 256 << 20

    public init() {}
}

public enum AddInputs {
    /// Expands the user's arguments into files: a directory contributes every regular file below
    /// it (paths relative to it), a file contributes itself under its base name. Everything is
    /// checked (readable, safe path, valid safetensors) before the store is touched.
    public static func collect(_ arguments: [String]) throws -> [AddInput] {
        guard !arguments.isEmpty else { throw SLMError.argument("add: no files or directories given") }
        var inputs: [AddInput] = []
        var seen: [String: String] = [:]
        func addFile(_ source: String, _ treePath: String) throws {
            if let problem = TreePath.problem(treePath) {
                throw SLMError.input(path: source, problem: "cannot be stored as \"\(treePath)\": path is \(problem)")
            }
            if let other = seen[treePath] {
                throw SLMError.input(path: source, problem: "both this and \(other) would be stored as \"\(treePath)\"")
            }
            seen[treePath] = source
            guard access(source, R_OK) == 0 else { throw SLMError.input(path: source, problem: "not readable (\(String(cString: strerror(errno))))") }
            let file = try FileDescriptor.openForReading(source)
            let size = try file.size()
            var header: SafetensorsHeader? = nil
            if treePath.hasSuffix(".safetensors") { header = try SafetensorsHeader.read(path: source) }
            inputs.append(AddInput(treePath: treePath, sourcePath: source, size: size, safetensors: header))
        }
        for arg in arguments {
            var st = stat()
            guard stat(arg, &st) == 0 else {
                throw SLMError.input(path: arg, problem: errno == ENOENT ? "no such file or directory" : String(cString: strerror(errno)))
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                try addFile(arg, FileSystem.basename(arg))
            case S_IFDIR:
                let before = inputs.count
                var visited = Set<String>()
                try walk(arg, "", &visited) { source, rel in try addFile(source, rel) }
                if inputs.count == before { throw SLMError.input(path: arg, problem: "directory holds no files") }
            default:
                throw SLMError.input(path: arg, problem: "not a regular file or directory")
            }
        }
        return inputs
    }

    /// Every readable regular file below `dir`, skipping what cannot be used (for seeds).
    public static func collectLenient(_ dir: String) throws -> [AddInput] {
        var out: [AddInput] = []
        var visited = Set<String>()
        try walk(dir, "", &visited) { source, rel in
            guard TreePath.problem(rel) == nil, let file = try? FileDescriptor.openForReading(source),
                  let size = try? file.size() else { return }
            var header: SafetensorsHeader? = nil
            if rel.hasSuffix(".safetensors") {
                guard let h = try? SafetensorsHeader.read(path: source) else { return }
                header = h
            }
            out.append(AddInput(treePath: rel, sourcePath: source, size: size, safetensors: header))
        }
        return out
    }

    private static func walk(_ dir: String, _ prefix: String, _ visited: inout Set<String>,
                             _ body: (String, String) throws -> Void) throws {
        guard let real = realpath(dir, nil) else { throw SLMError.input(path: dir, problem: "cannot resolve directory") }
        let key = String(cString: real)
        free(real)
        guard visited.insert(key).inserted else { return }  // a symlink loop
        let names: [String]
        do { names = try FileSystem.listDirectory(dir) } catch { throw SLMError.input(path: dir, problem: "cannot list directory") }
        for name in names where name != ".git" {
            let path = "\(dir)/\(name)"
            let rel = prefix.isEmpty ? name : "\(prefix)/\(name)"
            var st = stat()
            guard stat(path, &st) == 0 else { throw SLMError.input(path: path, problem: "dangling link or unreadable entry") }
            switch st.st_mode & S_IFMT {
            case S_IFREG: try body(path, rel)
            case S_IFDIR: try walk(path, rel, &visited, body)
            default: throw SLMError.input(path: path, problem: "not a regular file or directory")
            }
        }
    }
}

extension Store {
    /// Moves finished packs from a working directory into packs/: each pack before its index,
    /// since the index is what makes a pack visible.
    func commitPacks(_ packs: [PackWriter]) throws {
        for pack in packs {
            try FileSystem.rename(pack.packPath, packPath(pack.id))
            CrashPoint.hit("add-between-pack-and-index")
            try FileSystem.rename(pack.indexPath, packIndexPath(pack.id))
        }
        if !packs.isEmpty { try FileSystem.syncDirectory(packsDirectory) }
    }

    public func add(name: ModelName, version: SemVer, inputs: [AddInput], options: AddOptions = AddOptions()) throws -> AddResult {
        let started = Timestamp.monotonicSeconds()
        let dataLock = try self.dataLock(.shared)
        defer { dataLock.unlock() }
        removeAbandonedWorkingDirectories()
        let work = try makeWorkingDirectory("add")
        defer { work.remove() }

        let existing = try loadChunkIndex()
        let ingester = ChunkIngester(store: self, existing: existing, directory: work.path,
                                     packTargetSize: options.packTargetSize, chunker: config.chunker)
        let total = inputs.reduce(0) { $0 + $1.size }
        var entries: [FileEntry] = []
        for input in inputs {
            entries.append(try ingester.ingest(input) { done in options.progress?(done, total) })
        }
        let packs = try ingester.finish()
        let tree = TreeObject(files: entries)
        let treeBytes = tree.encoded()
        let treeID = SHA256Hasher.hash(treeBytes)

        let refs = try refsLock()
        defer { refs.unlock() }
        let refPath = versionRefPath(name, version)
        if let existingID = try readRef(at: refPath) {
            let old = try readVersion(existingID)
            guard old.tree == treeID else {
                throw SLMError.conflict("\(name)@\(version) already exists with different content (version \(existingID.hex.prefix(12))); versions are immutable, add a new version instead")
            }
            guard old.card == options.card, old.dependencies == options.dependencies else {
                throw SLMError.conflict("\(name)@\(version) already exists with the same files but a different card or dependencies; versions are immutable")
            }
            return AddResult(name: name, version: version, versionID: existingID, treeID: treeID, inputBytes: total,
                             storedBytes: 0, newChunks: 0, reusedChunks: ingester.newChunks + ingester.reusedChunks,
                             reusedBytes: total, files: entries.count, alreadyPresent: true, seconds: Timestamp.monotonicSeconds() - started)
        }
        let parent = try versions(of: name).last { $0.version < version }?.id
        let object = VersionObject(name: name.value, version: version, tree: treeID, parent: parent,
                                   created: Timestamp.now(), addedBy: Identity.current(), tool: SLMStoreVersion.tool,
                                   card: options.card, dependencies: options.dependencies)
        // Commit order: packs (pack before index), objects, then the ref. A crash at any point
        // leaves either unreferenced data (collected by gc) or a complete version.
        CrashPoint.hit("add-before-commit")
        try commitPacks(packs)
        CrashPoint.hit("add-after-packs")
        try writeObject(treeBytes)
        let versionID = try writeObject(object.encoded())
        CrashPoint.hit("add-before-ref")
        try writeRef(at: refPath, id: versionID)
        CrashPoint.hit("add-after-ref")
        return AddResult(name: name, version: version, versionID: versionID, treeID: treeID, inputBytes: total,
                         storedBytes: ingester.storedBytes, newChunks: ingester.newChunks, reusedChunks: ingester.reusedChunks,
                         reusedBytes: ingester.reusedBytes, files: entries.count, alreadyPresent: false, seconds: Timestamp.monotonicSeconds() - started)
    }
}

/// Streams files through chunking, hashing and compression, using both cores: each batch of
/// chunks is hashed and compressed in parallel while one worker feeds the file's SHA-256.
final class ChunkIngester {
    let store: Store
    let existing: ChunkIndex
    let directory: String
    let packTargetSize: UInt64
    let cdc: FastCDC
    let level: Int32
    /// When set, only these chunks are stored (seeding a pull from files already on disk).
    let wanted: Set<ChunkID>?

    private var writer: PackWriter?
    private var finished: [PackWriter] = []
    /// Chunks written by this operation, so a repeat within it is stored once.
    private var written = Set<ChunkID>()
    private(set) var newChunks = 0
    private(set) var reusedChunks = 0
    private(set) var storedBytes: UInt64 = 0
    private(set) var reusedBytes: UInt64 = 0
    private var processedBefore: UInt64 = 0

    static let blockSize = 16 << 20

    init(store: Store, existing: ChunkIndex, directory: String, packTargetSize: UInt64,
         chunker: ChunkerParameters, wanted: Set<ChunkID>? = nil) {
        self.store = store
        self.existing = existing
        self.directory = directory
        self.packTargetSize = packTargetSize
        self.cdc = FastCDC(chunker)
        self.level = Int32(store.config.compressionLevel)
        self.wanted = wanted
    }

    private struct Pending {
        var start: Int  // offset in the buffer
        var length: Int
    }

    private struct Outcome {
        var id: ChunkID
        var encoded: EncodedChunk?
    }

    func ingest(_ input: AddInput, progress: (UInt64) -> Void) throws -> FileEntry {
        let file = try FileDescriptor.openForReading(input.sourcePath)
        posix_fadvise(file.fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        let size = try file.size()
        guard size == input.size else { throw SLMError.input(path: input.sourcePath, problem: "file changed size while being added") }
        let boundaries = Segmenter.boundaries(fileSize: size, safetensors: input.safetensors, minSize: cdc.parameters.minSize)
        let maxSize = cdc.parameters.maxSize
        let capacity = ChunkIngester.blockSize + maxSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        defer { buffer.deallocate() }
        let sha = SHA256Hasher()
        var refs: [ChunkRef] = []

        var bufferStart: UInt64 = 0   // file offset of buffer[0]
        var bufferLength = 0
        var position: UInt64 = 0      // next chunk starts here
        var nextBoundary = 1          // index into boundaries of the next segment start after position

        while position < size {
            // Refill: keep the unconsumed tail, read up to capacity.
            let keep = Int(bufferStart + UInt64(bufferLength) - position)
            if keep > 0 {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + Int(position - bufferStart), byteCount: keep)
            }
            bufferStart = position
            bufferLength = keep
            let want = min(capacity - keep, Int(size - (bufferStart + UInt64(keep))))
            if want > 0 {
                let got = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[keep..<keep + want]), count: want)
                guard got == want else { throw SLMError.input(path: input.sourcePath, problem: "file shrank while being added") }
                bufferLength += got
            }
            let bufferEnd = bufferStart + UInt64(bufferLength)

            // Cut as many chunks as the buffer allows.
            var batch: [Pending] = []
            while position < size {
                while nextBoundary < boundaries.count && boundaries[nextBoundary] <= position { nextBoundary += 1 }
                let segmentEnd = nextBoundary < boundaries.count ? boundaries[nextBoundary] : size
                let end = min(segmentEnd, bufferEnd)
                let available = Int(end - position)
                if available < maxSize && end == bufferEnd && bufferEnd < size { break }
                let offset = Int(position - bufferStart)
                let n = cdc.cut(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + available]))
                batch.append(Pending(start: offset, length: n))
                position += UInt64(n)
            }
            guard !batch.isEmpty else { continue }
            let batchRange = batch[0].start..<(batch[batch.count - 1].start + batch[batch.count - 1].length)
            let outcomes = process(batch, buffer: UnsafeRawBufferPointer(buffer), hashing: batchRange, into: sha)
            for (pending, outcome) in zip(batch, outcomes) {
                refs.append(ChunkRef(id: outcome.id, rawLength: UInt32(pending.length)))
                if let wanted, !wanted.contains(outcome.id) { continue }
                if existing.contains(outcome.id) || written.contains(outcome.id) {
                    reusedChunks += 1
                    reusedBytes += UInt64(pending.length)
                    continue
                }
                let encoded = outcome.encoded!
                try currentWriter().append(id: outcome.id, rawLength: UInt32(pending.length), encoded: encoded)
                written.insert(outcome.id)
                newChunks += 1
                storedBytes += UInt64(PackFormat.recordHeaderSize + encoded.payload.count)
            }
            if let w = writer, w.size >= packTargetSize {
                finished.append(w)
                _ = try w.finish()
                writer = nil
            }
            progress(processedBefore + position)
        }
        processedBefore += size
        progress(processedBefore)
        return FileEntry(path: input.treePath, size: size, sha256: sha.finish(), chunks: refs, safetensors: input.safetensors)
    }

    /// Hashes every chunk of the batch and compresses the ones the store lacks, in parallel;
    /// iteration 0 feeds the file digest, which must see the bytes in order.
    private func process(_ batch: [Pending], buffer: UnsafeRawBufferPointer, hashing range: Range<Int>,
                         into sha: SHA256Hasher) -> [Outcome] {
        let results = UnsafeMutableBufferPointer<Outcome>.allocate(capacity: batch.count)
        defer { results.deallocate() }
        nonisolated(unsafe) let out = results
        nonisolated(unsafe) let buffer = buffer
        let existing = self.existing
        let written = self.written
        let wanted = self.wanted
        let level = self.level
        DispatchQueue.concurrentPerform(iterations: batch.count + 1) { i in
            if i == 0 {
                sha.update(UnsafeRawBufferPointer(rebasing: buffer[range]))
                return
            }
            let p = batch[i - 1]
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[p.start..<p.start + p.length])
            let id = ChunkID(of: bytes)
            var encoded: EncodedChunk? = nil
            if !existing.contains(id) && !written.contains(id) && (wanted?.contains(id) ?? true) {
                encoded = ChunkEncoder.encode(bytes, level: level)
            }
            (out.baseAddress! + (i - 1)).initialize(to: Outcome(id: id, encoded: encoded))
        }
        let array = Array(results)
        results.baseAddress!.deinitialize(count: batch.count)
        return array
    }

    private func currentWriter() throws -> PackWriter {
        if let w = writer { return w }
        let w = try PackWriter(directory: directory)
        writer = w
        return w
    }

    /// Closes the open pack; returns every non-empty pack written, durable in the working directory.
    func finish() throws -> [PackWriter] {
        if let w = writer {
            if w.isEmpty {
                FileSystem.remove(w.packPath)
            } else {
                _ = try w.finish()
                finished.append(w)
            }
            writer = nil
        }
        return finished
    }
}
