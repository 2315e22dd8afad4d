// The tree of one model version: every file with its size, SHA-256, ordered chunk list and,
// for safetensors, the tensor table. Binary and canonical; its id is the SHA-256 of its bytes.

/// A chunk as a file lists it: its id and its length before compression.
public struct ChunkRef: Equatable, Hashable, Sendable {
    /// The chunk's XXH3-128 id.
    public var id: ChunkID
    /// Its length in the file, before any codec.
    public var rawLength: UInt32

    /// A reference to chunk `id` of `rawLength` bytes.
    public init(id: ChunkID, rawLength: UInt32) {
        self.id = id
        self.rawLength = rawLength
    }
}

/// One file of a version: its path, size, SHA-256, chunks in order and, for weights files, its
/// tensor table.
public struct FileEntry: Equatable, Sendable {
    /// How a file is stored in a tree (the kind byte of Format.md).
    public enum Kind: UInt8, Sendable { case plain = 0, safetensors = 1, gguf = 2 }

    /// The path relative to the version's root, `/`-separated.
    public var path: String
    /// The file's size in bytes (the sum of its chunks).
    public var size: UInt64
    /// The SHA-256 of the whole file, checked on every checkout.
    public var sha256: SHA256Digest
    /// The file's chunks in order (held, or read from a file for large trees).
    public var chunks: ChunkList
    /// Present for safetensors files.
    public var safetensors: SafetensorsHeader?

    /// An entry whose chunks are held in memory.
    public init(path: String, size: UInt64, sha256: SHA256Digest, chunks: [ChunkRef], safetensors: SafetensorsHeader?) {
        self.init(path: path, size: size, sha256: sha256, chunks: ChunkList(chunks), safetensors: safetensors)
    }

    /// An entry with a chunk list as given (held or file-backed).
    public init(path: String, size: UInt64, sha256: SHA256Digest, chunks: ChunkList, safetensors: SafetensorsHeader?) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.chunks = chunks
        self.safetensors = safetensors
    }

    /// The kind recorded in the tree: from the tensor table's format, else plain.
    public var kind: Kind {
        guard let st = safetensors else { return .plain }
        return st.format == .gguf ? .gguf : .safetensors
    }
}

/// The files of a version, sorted by path (Format.md). Its id is the SHA-256 of `encoded()`.
public struct TreeObject: Equatable, Sendable {
    /// The eight bytes a tree object starts with.
    public static let magic: [UInt8] = Array("SLMTREE\0".utf8)
    /// The tree format this build writes and reads.
    public static let formatVersion: UInt32 = 1
    /// Bound on a tree object's size when read from disk or a remote.
    /// 64 MiB: 3 million chunks, a 200 GB model. Held in memory a tree costs about 4.5 times its
    /// size, which is why trees above `inMemoryLimit` are read from their file instead.
    public static let maxEncodedSize = 64 << 20
    /// Trees larger than this are read from their file on demand (`decode(file:)`) rather than
    /// held: about 13,000 chunks, an 850 MB model at the default chunk size. Held, a tree costs
    /// about 4.5 times its size: at most about 1.2 MiB, whatever the model.
    public static let inMemoryLimit = 256 << 10

    /// Sorted by path (UTF-8 byte order); paths are unique.
    public private(set) var files: [FileEntry]

    /// A tree of `files`, sorted by path as bytes.
    public init(files: [FileEntry]) {
        self.files = files.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
    }

    /// The bytes of all files.
    public var totalSize: UInt64 { files.reduce(0) { $0 + $1.size } }

    /// The entry at `path`, if the tree has one.
    public func file(_ path: String) -> FileEntry? { files.first { $0.path == path } }

    /// The binary encoding Format.md specifies (throws when a file-backed chunk list cannot be
    /// read).
    public func encoded() throws -> [UInt8] {
        var out: [UInt8] = []
        try encode(pieceSize: .max) { out = $0 }
        return out
    }

    /// The encoding handed to `emit` in order, in pieces of about `pieceSize` bytes (the last may
    /// be smaller), so a tree with millions of chunks is written or hashed without being held.
    public func encode(pieceSize: Int = 1 << 20, emit: ([UInt8]) throws -> Void) throws {
        let total = 64 + files.reduce(0) { $0 + 64 + $1.chunks.count * 20 }
        var w = ByteWriter(capacity: min(total, pieceSize == .max ? total : pieceSize + 4096))
        func emitIfFull() throws {
            guard w.bytes.count >= pieceSize else { return }
            try emit(w.bytes)
            w.bytes.removeAll(keepingCapacity: true)
        }
        w.raw(Self.magic)
        w.u32(Self.formatVersion)
        w.u32(UInt32(files.count))
        for f in files {
            let p = Array(f.path.utf8)
            w.u16(UInt16(p.count))
            w.raw(p)
            w.u64(f.size)
            w.raw(f.sha256.bytes)
            w.u8(f.kind.rawValue)
            w.u32(UInt32(f.chunks.count))
            try f.chunks.forEach { c in
                w.raw(c.id.canonicalBytes)
                w.u32(c.rawLength)
                try emitIfFull()
            }
            if let st = f.safetensors {
                w.u64(st.headerLength)
                w.u32(UInt32(st.tensors.count))
                for t in st.tensors {
                    let name = Array(t.name.utf8)
                    w.u16(UInt16(name.count))
                    w.raw(name)
                    let dtype = Array(t.dtype.utf8)
                    w.u8(UInt8(dtype.count))
                    w.raw(dtype)
                    w.u8(UInt8(t.shape.count))
                    for d in t.shape { w.u64(d) }
                    w.u64(t.begin)
                    w.u64(t.end)
                }
            }
            try emitIfFull()
        }
        if !w.bytes.isEmpty || pieceSize == .max { try emit(w.bytes) }
    }

    /// The tree id: the SHA-256 of the encoding.
    public func id() throws -> SHA256Digest { SHA256Hasher.hash(try encoded()) }

    /// Decodes and checks a tree: structure, path safety, chunk lengths summing to each size,
    /// sorted unique paths. `source` names the file or URL in errors.
    public static func decode(_ bytes: [UInt8], source: String) throws -> TreeObject {
        var r = ByteReader(bytes)
        return try decode(&r, chunkFile: nil, source: source)
    }

    /// Decodes and checks the tree object in `file` in one pass through a small buffer, and
    /// checks that its bytes hash to `id`. Its chunk lists stay in the file, read on demand
    /// through the open descriptor: the tree costs the same memory whatever the model's size.
    public static func decode(file: FileDescriptor, id: SHA256Digest, source: String) throws -> TreeObject {
        let size = try file.size()
        guard size <= UInt64(maxEncodedSize) else {
            throw SLMError.damaged(path: source, problem: "tree object is \(size) bytes, more than the \(maxEncodedSize) a tree may have")
        }
        var r = try FileByteReader(file, hashing: true)
        let tree = try decode(&r, chunkFile: ChunkListFile(file), source: source)
        guard r.hasher!.finish() == id else {
            throw SLMError.damaged(path: source, problem: "content does not hash to its id \(id.hex)")
        }
        return tree
    }

    /// The tensor index stored after a safetensors or GGUF file's chunk list.
    private static func decodeTensorIndex<R: ByteSource>(_ r: inout R, kind: FileEntry.Kind, fileSize size: UInt64,
                                                         path: String, source: String) throws -> SafetensorsHeader {
        let headerLength = try r.u64("header length")
        let tensorCount = try r.u32("tensor count")
        guard Int(tensorCount) <= r.remaining / 20 else { throw ByteReaderError(message: "tensor count \(tensorCount) larger than the object") }
        var tensors: [TensorInfo] = []
        for _ in 0..<tensorCount {
            let nameBytes = try r.raw(Int(try r.u16("tensor name length")), "tensor name")
            let dtypeBytes = try r.raw(Int(try r.u8("dtype length")), "dtype")
            let rank = Int(try r.u8("rank"))
            var shape: [UInt64] = []
            for _ in 0..<rank { shape.append(try r.u64("dimension")) }
            let begin = try r.u64("tensor begin")
            let end = try r.u64("tensor end")
            guard begin <= end, end <= size else {
                throw SLMError.damaged(path: source, problem: "tensor range \(begin)..<\(end) out of bounds in \"\(path)\"")
            }
            tensors.append(TensorInfo(name: String(decoding: nameBytes, as: UTF8.self),
                                      dtype: String(decoding: dtypeBytes, as: UTF8.self),
                                      shape: shape, begin: begin, end: end))
        }
        guard headerLength <= size else {
            throw SLMError.damaged(path: source, problem: "header length \(headerLength) beyond the size of \"\(path)\"")
        }
        var header = SafetensorsHeader(headerLength: headerLength, tensors: tensors, metadata: [:])
        if kind == .gguf { header.format = .gguf }
        return header
    }

    /// The decoder for both: with `chunkFile`, chunk lists are checked as they pass and then
    /// left in that file; without, they are held.
    static func decode<R: ByteSource>(_ r: inout R, chunkFile: ChunkListFile?, source: String) throws -> TreeObject {
        var files: [FileEntry] = []
        do {
            try r.expect(magic, "tree magic")
            let version = try r.u32("format version")
            guard version == formatVersion else {
                throw SLMError.damaged(path: source, problem: "tree format version \(version) is not supported (this build reads \(formatVersion))")
            }
            let count = try r.u32("file count")
            guard Int(count) <= r.remaining / 48 else { throw ByteReaderError(message: "file count \(count) larger than the object") }
            var previous: [UInt8]? = nil
            for _ in 0..<count {
                let pathLength = Int(try r.u16("path length"))
                let pathBytes = try r.raw(pathLength, "path")
                guard let path = String(validating: pathBytes, as: UTF8.self) else {
                    throw SLMError.damaged(path: source, problem: "a file path is not valid UTF-8")
                }
                try TreePath.validate(path, source: source)
                if let prev = previous, !prev.lexicographicallyPrecedes(pathBytes) {
                    throw SLMError.damaged(path: source, problem: "file paths are not sorted and unique at \"\(path)\"")
                }
                previous = pathBytes
                let size = try r.u64("file size")
                let digest = SHA256Digest(bytes: try r.raw(32, "sha256"))!
                let kindByte = try r.u8("kind")
                guard let kind = FileEntry.Kind(rawValue: kindByte) else {
                    throw SLMError.damaged(path: source, problem: "unknown file kind \(kindByte) for \"\(path)\"")
                }
                let chunkCount = try r.u32("chunk count")
                guard Int(chunkCount) <= r.remaining / 20 else { throw ByteReaderError(message: "chunk count \(chunkCount) larger than the object") }
                var chunks: [ChunkRef] = []
                if chunkFile == nil { chunks.reserveCapacity(Int(chunkCount)) }
                let chunksOffset = UInt64(r.offset)
                var sum: UInt64 = 0
                for _ in 0..<chunkCount {
                    try r.need(20, "chunk")
                    let id = try r.chunkID("chunk id")
                    let len = try r.u32("chunk length")
                    guard len > 0, len <= 64 << 20 else {
                        throw SLMError.damaged(path: source, problem: "chunk of \(len) bytes in \"\(path)\" (must be 1 byte to 64 MiB)")
                    }
                    sum += UInt64(len)
                    if chunkFile == nil { chunks.append(ChunkRef(id: id, rawLength: len)) }
                }
                guard sum == size else {
                    throw SLMError.damaged(path: source, problem: "chunks of \"\(path)\" add up to \(sum) bytes, but its size is \(size)")
                }
                let header = (kind == .safetensors || kind == .gguf)
                    ? try decodeTensorIndex(&r, kind: kind, fileSize: size, path: path, source: source) : nil
                let list = chunkFile.map { ChunkList(file: $0, offset: chunksOffset, count: Int(chunkCount)) } ?? ChunkList(chunks)
                files.append(FileEntry(path: path, size: size, sha256: digest, chunks: list, safetensors: header))
            }
            guard r.atEnd else { throw ByteReaderError(message: "\(r.remaining) unexpected bytes after the last file") }
        } catch let e as ByteReaderError {
            throw SLMError.damaged(path: source, problem: "tree: \(e.message)")
        }
        return TreeObject(files: files)
    }
}

/// Rules for a relative path inside a tree: these keep checkout inside its target directory.
public enum TreePath {
    /// Throws unless `path` is relative, at most 4096 bytes, with no empty, `.` or `..` segment
    /// and no NUL or backslash (`problem` says which); `source` names the tree in the error.
    public static func validate(_ path: String, source: String) throws {
        func bad(_ why: String) -> SLMError { .damaged(path: source, problem: "unsafe file path \"\(path)\": \(why)") }
        if let problem = problem(path) { throw bad(problem) }
    }

    /// nil when `path` is a safe relative path, else why not.
    public static func problem(_ path: String) -> String? {
        if path.isEmpty { return "empty" }
        if path.utf8.count > 4096 { return "longer than 4096 bytes" }
        if path.hasPrefix("/") { return "absolute" }
        if path.utf8.contains(0) || path.contains("\\") { return "contains NUL or backslash" }
        for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { return "empty segment" }
            if segment == "." || segment == ".." { return "contains '\(segment)'" }
        }
        return nil
    }
}
