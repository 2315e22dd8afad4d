// A file's ordered chunk list, held in memory or read on demand from the tree object on disk.
// A large model's chunk list is as long as the model is large; read from its file it costs a
// small block cache instead, so pull, sync and checkout need the same memory at any model size.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

public struct ChunkList: RandomAccessCollection, Equatable, Sendable, ExpressibleByArrayLiteral {
    enum Storage: Sendable {
        case memory([ChunkRef])
        /// `count` records of 20 bytes (id, raw length) at `offset` in an encoded tree object
        /// whose structure was checked when it was decoded.
        case file(ChunkListFile, offset: UInt64)
    }

    let storage: Storage
    public let count: Int

    public init(_ refs: [ChunkRef]) {
        storage = .memory(refs)
        count = refs.count
    }

    public init(arrayLiteral refs: ChunkRef...) { self.init(refs) }

    init(file: ChunkListFile, offset: UInt64, count: Int) {
        storage = .file(file, offset: offset)
        self.count = count
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// Whether the list is read from a file rather than held.
    public var isFileBacked: Bool { if case .file = storage { return true } else { return false } }

    public subscript(position: Int) -> ChunkRef {
        precondition(position >= 0 && position < count, "chunk index \(position) out of range 0..<\(count)")
        switch storage {
        case .memory(let refs): return refs[position]
        case .file(let file, let offset): return file.ref(at: offset + UInt64(position) * 20)
        }
    }

    public func makeIterator() -> Iterator { Iterator(list: self) }

    /// Reads a file-backed list a block at a time (no lock, no shared cache); a list in memory
    /// is its one block.
    public struct Iterator: IteratorProtocol {
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

        public mutating func next() -> ChunkRef? {
            guard position < count else { return nil }
            if position - blockStart >= block.count, let file {
                blockStart = position
                block = file.refs(at: offset + UInt64(position) * 20, count: Swift.min(ChunkListFile.blockRefs, count - position))
            }
            defer { position += 1 }
            return block[position - blockStart]
        }
    }

    public static func == (a: ChunkList, b: ChunkList) -> Bool { a.count == b.count && a.elementsEqual(b) }
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

    func ref(at offset: UInt64) -> ChunkRef {
        cache.withLock { cached in
            if offset >= cached.start, (offset - cached.start) % 20 == 0, (offset - cached.start) / 20 < UInt64(cached.refs.count) {
                return cached.refs[Int((offset - cached.start) / 20)]
            }
            let fileSize = (try? file.size()) ?? 0
            let n = Int(min(UInt64(Self.blockRefs), (fileSize > offset ? fileSize - offset : 0) / 20))
            cached = (offset, refs(at: offset, count: max(1, n)))
            return cached.refs[0]
        }
    }

    /// `count` refs from `offset`. The object was decoded and checked from this descriptor, so
    /// a failing read is a failing disk (or a file changed under the store): nothing a caller
    /// could recover from with the wrong chunk list, so it stops the process with the reason.
    func refs(at offset: UInt64, count: Int) -> [ChunkRef] {
        var bytes = [UInt8](repeating: 0, count: count * 20)
        do {
            try bytes.withUnsafeMutableBytes { try file.pread(into: $0, count: count * 20, at: offset) }
        } catch {
            fatalError("reading the chunk list of tree object \(file.path) at byte \(offset) failed: \(error)")
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
