// A file's ordered chunk list, held in memory or read on demand from the tree object on disk.
// A large model's chunk list is as long as the model is large; read from its file it costs a
// small block cache instead, so pull, sync and checkout need the same memory at any model size.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// Not a Swift `Collection`: reading a file-backed list can fail (a failing disk, a file changed
/// under the store), and a collection's subscript cannot throw. Every read here throws instead,
/// so a host process that links the library (a gateway) gets an error, not a crash.
public struct ChunkList: Equatable, Sendable, ExpressibleByArrayLiteral {
    enum Storage: Sendable {
        case memory([ChunkRef])
        /// `count` records of 20 bytes (id, raw length) at `offset` in an encoded tree object
        /// whose structure was checked when it was decoded.
        case file(ChunkListFile, offset: UInt64)
    }

    let storage: Storage
    /// How many chunks the list holds.
    public let count: Int

    /// A list held in memory.
    public init(_ refs: [ChunkRef]) {
        storage = .memory(refs)
        count = refs.count
    }

    /// A list held in memory, written as an array literal.
    public init(arrayLiteral refs: ChunkRef...) { self.init(refs) }

    init(file: ChunkListFile, offset: UInt64, count: Int) {
        storage = .file(file, offset: offset)
        self.count = count
    }

    /// Whether the list holds no chunk.
    public var isEmpty: Bool { count == 0 }

    /// Whether the list is read from a file rather than held.
    public var isFileBacked: Bool { if case .file = storage { return true } else { return false } }

    /// The ref at `position` (0..<count); a file-backed list reads it through a one-block cache.
    public func ref(at position: Int) throws -> ChunkRef {
        precondition(position >= 0 && position < count, "chunk index \(position) out of range 0..<\(count)")
        switch storage {
        case .memory(let refs): return refs[position]
        case .file(let file, let offset): return try file.ref(at: offset + UInt64(position) * 20)
        }
    }

    /// Every ref, held: for lists known to be small, or where the caller needs them all anyway.
    public func refs() throws -> [ChunkRef] {
        switch storage {
        case .memory(let refs): return refs
        case .file(let file, let offset): return try file.refs(at: offset, count: count)
        }
    }

    /// An iterator over the refs in order.
    public func makeIterator() -> Iterator { Iterator(list: self) }

    /// Calls `body` with each ref in order, reading a file-backed list a block at a time.
    public func forEach(_ body: (ChunkRef) throws -> Void) throws {
        var it = makeIterator()
        while let ref = try it.next() { try body(ref) }
    }

    /// The refs transformed, in order.
    public func map<T>(_ transform: (ChunkRef) throws -> T) throws -> [T] {
        var out: [T] = []
        out.reserveCapacity(count)
        try forEach { out.append(try transform($0)) }
        return out
    }

    /// The refs combined in order, as `Sequence.reduce`.
    public func reduce<T>(_ initial: T, _ next: (T, ChunkRef) throws -> T) throws -> T {
        var acc = initial
        try forEach { acc = try next(acc, $0) }
        return acc
    }

    /// Whether any ref satisfies `predicate`.
    public func contains(where predicate: (ChunkRef) throws -> Bool) throws -> Bool {
        var it = makeIterator()
        while let ref = try it.next() { if try predicate(ref) { return true } }
        return false
    }

    /// The first ref that satisfies `predicate`.
    public func first(where predicate: (ChunkRef) throws -> Bool) throws -> ChunkRef? {
        var it = makeIterator()
        while let ref = try it.next() { if try predicate(ref) { return ref } }
        return nil
    }

    /// Whether every ref satisfies `predicate`.
    public func allSatisfy(_ predicate: (ChunkRef) throws -> Bool) throws -> Bool {
        try !contains { try !predicate($0) }
    }

    /// Reads a file-backed list a block at a time (no lock, no shared cache); a list in memory
    /// is its one block. `next()` throws where reading the file fails.
    public struct Iterator {
        let count: Int
        let file: ChunkListFile?
        let offset: UInt64
        var block: [ChunkRef]
        var blockStart = 0
        var position = 0

        init(list: ChunkList) {
            count = list.count
            switch list.storage {
            case .memory(let refs): (file, offset, block) = (nil, 0, refs)
            case .file(let f, let o): (file, offset, block) = (f, o, [])
            }
        }

        /// The next ref, or nil after the last.
        public mutating func next() throws -> ChunkRef? {
            guard position < count else { return nil }
            if position - blockStart >= block.count, let file {
                blockStart = position
                block = try file.refs(at: offset + UInt64(position) * 20, count: Swift.min(ChunkListFile.blockRefs, count - position))
            }
            defer { position += 1 }
            return block[position - blockStart]
        }
    }

    /// Lists compare by their refs; a file-backed list that cannot be read equals no list (the
    /// read fails again, with its error, wherever the list is used).
    public static func == (a: ChunkList, b: ChunkList) -> Bool {
        guard a.count == b.count else { return false }
        var (x, y) = (a.makeIterator(), b.makeIterator())
        do {
            while let l = try x.next() {
                guard let r = try y.next(), l == r else { return false }
            }
            return true
        } catch {
            return false
        }
    }
}

/// An encoded tree object on disk that chunk lists read from. The descriptor stays open as
/// long as a list uses it, so the lists stay readable after the file is renamed or removed.
public final class ChunkListFile: Sendable {
    static let blockRefs = 4096
    let file: FileDescriptor
    /// The block of refs last read through the subscript: sequential indexing reads the file
    /// once per block, not once per chunk.
    private let cache = Mutex<(start: UInt64, refs: [ChunkRef])>((0, []))

    init(_ file: FileDescriptor) { self.file = file }

    var path: String { file.path }

    func ref(at offset: UInt64) throws -> ChunkRef {
        try cache.withLock { cached in
            if offset >= cached.start, (offset - cached.start) % 20 == 0, (offset - cached.start) / 20 < UInt64(cached.refs.count) {
                return cached.refs[Int((offset - cached.start) / 20)]
            }
            let fileSize = try file.size()
            let n = Int(min(UInt64(Self.blockRefs), (fileSize > offset ? fileSize - offset : 0) / 20))
            cached = (offset, try refs(at: offset, count: max(1, n)))
            return cached.refs[0]
        }
    }

    /// `count` refs from `offset`. The object was decoded and checked from this descriptor, so
    /// a failing read is a failing disk or a file changed under the store: the error says which
    /// tree object, and the caller's operation stops with it.
    func refs(at offset: UInt64, count: Int) throws -> [ChunkRef] {
        var bytes = [UInt8](repeating: 0, count: count * 20)
        do {
            try bytes.withUnsafeMutableBytes { try file.pread(into: $0, count: count * 20, at: offset) }
        } catch {
            throw SLMError.damaged(path: file.path, problem: "reading its chunk list at byte \(offset) failed").caused(by: error)
        }
        var out: [ChunkRef] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let at = i * 20
            out.append(ChunkRef(id: ChunkID(canonical: bytes[at..<at + 16])!, rawLength: bytes.readLE(UInt32.self, at: at + 16)))
        }
        return out
    }
}

/// Chunk lists being made (by `add`), kept in a scratch file rather than in memory: a file's
/// refs are appended as they are cut, and each finished list reads back from the file, so
/// adding a file of any size holds one write buffer, not its chunk list.
package final class ChunkListWriter {
    private let file: FileDescriptor
    private let lists: ChunkListFile
    private var buffer = ByteWriter(capacity: ChunkListWriter.bufferBytes)
    private var written: UInt64 = 0
    private var listStart: UInt64 = 0
    private static let bufferBytes = 20 * ChunkListFile.blockRefs

    /// A writer over a new scratch file at `path` (the caller's working directory removes it).
    package init(path: String) throws {
        file = try FileDescriptor(path: path, flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        lists = ChunkListFile(file)
    }

    /// Appends the next ref of the list being made.
    package func append(_ ref: ChunkRef) throws {
        buffer.raw(ref.id.canonicalBytes)
        buffer.u32(ref.rawLength)
        if buffer.bytes.count >= Self.bufferBytes { try flush() }
    }

    private func flush() throws {
        guard !buffer.bytes.isEmpty else { return }
        try file.write(buffer.bytes)
        written += UInt64(buffer.bytes.count)
        buffer.bytes.removeAll(keepingCapacity: true)
    }

    /// Drops what was appended since the last finished list (a file whose ingest failed), so
    /// the next list starts clean.
    package func discardUnfinished() {
        buffer.bytes.removeAll(keepingCapacity: true)
        listStart = written
    }

    /// Ends the list being made and returns it, read from the scratch file; the next append
    /// starts a new list.
    package func finishList() throws -> ChunkList {
        try flush()
        let list = ChunkList(file: lists, offset: listStart, count: Int((written - listStart) / 20))
        listStart = written
        return list
    }
}
