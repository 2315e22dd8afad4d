// The multi-pack index: the entries of many pack indexes merged into one sorted table with a
// fan-out, so finding a chunk costs one small read whatever the store holds (Format.md §6.1).
// It is derived data: pack indexes stay the truth, readers fall back to them.

import SLMFormats
import Foundation

/// The constants of the multi-pack index format (Format.md).
public enum MultiPackFormat {
    /// The eight bytes the file starts with.
    public static let magic: [UInt8] = Array("SLMMIDX\0".utf8)
    /// The format this build writes and reads.
    public static let version: UInt32 = 1
    /// Bytes before the pack list.
    public static let headerSize = 24
    /// Bytes of one pack id in the pack list.
    public static let packIDSize = 16
    /// Bytes of one entry.
    public static let entrySize = 40
    /// Buckets by the first two bytes of the chunk id: a bucket of a 20-million-entry index is
    /// about 300 entries (12 KiB), read with one pread.
    public static let fanOutBuckets = 65536
    /// Bytes of the fan-out table: a 32-bit count per bucket.
    public static let fanOutSize = fanOutBuckets * 4
    /// Its name under packs/.
    public static let fileName = "multi-pack-index"

    /// Bytes of a multi-pack index over `packs` packs and `entries` entries.
    static func fileSize(packs: Int, entries: Int) -> Int {
        headerSize + packs * (packIDSize + 8) + entries * entrySize + fanOutSize + 32
    }
}

/// One entry of a multi-pack index: a record in pack number `pack` (of the index's pack list).
struct MultiPackEntry {
    var pack: Int
    var offset: UInt64
    var storedLength: UInt32
    var rawLength: UInt32
    var codec: ChunkCodec
}

/// An open multi-pack index. Opening it reads and checks its structure (sizes, pack list,
/// fan-out: a few hundred KiB) but not its checksum, which would read the whole file: every
/// entry a lookup returns is bounds-checked instead, and every record read through it is
/// hash-checked (verify checks the checksum). Lookups read one fan-out bucket with pread rather
/// than through a memory map: the kernel maps 64 KiB around every page fault, so millions of
/// lookups through a map would make the whole file resident in the process.
public final class MultiPackIndex: Sendable {
    /// The file it was opened from.
    public let path: String
    /// The packs it covers, in its pack list's order.
    public let packs: [PackID]
    /// Each covered pack's size, as its index recorded it.
    public let packSizes: [UInt64]
    /// How many entries it holds.
    public let entryCount: Int
    /// The SHA-256 trailer as stored (checked by verify).
    public let storedChecksum: SHA256Digest
    private let file: FileDescriptor
    private let entriesOffset: Int
    /// fanOut[b] = entries whose id's first two bytes are ≤ b.
    private let fanOut: [UInt32]
    /// Buckets larger than this are narrowed by single-entry reads before being read whole.
    private static let bucketReadLimit = 1600

    /// The index at `path`, or nil when there is none. Throws `.damaged` when it is malformed.
    public static func open(_ path: String) throws -> MultiPackIndex? {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.openForReading(path)
        } catch let e as SLMError {
            guard case .io(_, "open", ENOENT) = e.kind else { throw e }
            return nil
        }
        return try MultiPackIndex(path: path, file: file)
    }

    private init(path: String, file: FileDescriptor) throws {
        func bad(_ p: String) -> SLMError { .damaged(path: path, problem: "multi-pack index: \(p)") }
        let size = Int(try file.size())
        guard size >= MultiPackFormat.fileSize(packs: 0, entries: 0) else { throw bad("too short (\(size) bytes)") }
        let header = try file.pread(count: MultiPackFormat.headerSize, at: 0)
        guard Array(header[0..<8]) == MultiPackFormat.magic else { throw bad("bad magic") }
        let version = header.readLE(UInt32.self, at: 8)
        guard version == MultiPackFormat.version else { throw bad("format version \(version) is not supported") }
        let packCount = Int(header.readLE(UInt32.self, at: 12))
        let entries = header.readLE(UInt64.self, at: 16)
        guard entries <= UInt64(UInt32.max), MultiPackFormat.fileSize(packs: packCount, entries: Int(entries)) == size else {
            throw bad("size \(size) does not match \(packCount) packs and \(entries) entries")
        }
        let table = try file.pread(count: packCount * (MultiPackFormat.packIDSize + 8), at: UInt64(MultiPackFormat.headerSize))
        var packs: [PackID] = []
        var sizes: [UInt64] = []
        packs.reserveCapacity(packCount)
        sizes.reserveCapacity(packCount)
        let sizesAt = packCount * MultiPackFormat.packIDSize
        for i in 0..<packCount {
            let id = PackID(hex: Hex.encode(table[(i * 16)..<(i * 16 + 16)]))!
            if let last = packs.last, !(last < id) { throw bad("pack ids not sorted and unique at \(id)") }
            packs.append(id)
            sizes.append(table.readLE(UInt64.self, at: sizesAt + 8 * i))
        }
        let entriesOffset = MultiPackFormat.headerSize + packCount * (MultiPackFormat.packIDSize + 8)
        let fanOutOffset = entriesOffset + Int(entries) * MultiPackFormat.entrySize
        let fanOutBytes = try file.pread(count: MultiPackFormat.fanOutSize + 32, at: UInt64(fanOutOffset))
        var fanOut = [UInt32](repeating: 0, count: MultiPackFormat.fanOutBuckets)
        var previous: UInt32 = 0
        for b in 0..<MultiPackFormat.fanOutBuckets {
            let f = fanOutBytes.readLE(UInt32.self, at: 4 * b)
            guard f >= previous else { throw bad("fan-out decreases at bucket \(b)") }
            fanOut[b] = f
            previous = f
        }
        guard UInt64(previous) == entries else { throw bad("fan-out ends at \(previous), not at the entry count \(entries)") }
        self.path = path
        self.file = file
        self.packs = packs
        self.packSizes = sizes
        self.entryCount = Int(entries)
        self.entriesOffset = entriesOffset
        self.fanOut = fanOut
        self.storedChecksum = SHA256Digest(bytes: Array(fanOutBytes.suffix(32)))!
    }

    private static func id(in b: UnsafeRawBufferPointer, at offset: Int) -> ChunkID {
        ChunkID(high: UInt64(bigEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
                low: UInt64(bigEndian: b.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)))
    }

    /// The entry at `offset` of `b`, or nil when it fails the checks a pack index entry must pass.
    private func entry(in b: UnsafeRawBufferPointer, at offset: Int) -> MultiPackEntry? {
        let off = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self))
        let stored = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset + 24, as: UInt32.self))
        let raw = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset + 28, as: UInt32.self))
        let pack = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset + 32, as: UInt32.self)))
        guard pack < packs.count, case let .success(e) = PackIndexEntry.checked(id: Self.id(in: b, at: offset), offset: off, storedLength: stored,
                                                                                rawLength: raw, codecByte: b[offset + 36], packSize: packSizes[pack]) else { return nil }
        return MultiPackEntry(pack: pack, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, codec: e.codec)
    }

    /// Calls `body` with each sound entry for `id`, in pack order, until it returns true.
    /// A read error counts as "not found" (the bytes behind any entry are checked anyway).
    @discardableResult
    func forEachEntry(of id: ChunkID, _ body: (MultiPackEntry) -> Bool) -> Bool {
        let bucket = Int(id.high >> 48)
        var lo = bucket == 0 ? 0 : Int(fanOut[bucket - 1])
        var hi = Int(fanOut[bucket])
        let size = MultiPackFormat.entrySize
        // A huge bucket (billions of entries) is narrowed one entry read at a time. A read that
        // fails answers "not here" (the caller stores or fetches the chunk again rather than
        // failing); verify reports the file.
        while hi - lo > Self.bucketReadLimit {
            let mid = (lo + hi) / 2
            guard let b = try? file.pread(count: 16, at: UInt64(entriesOffset + mid * size)) else { return false }
            if b.withUnsafeBytes({ Self.id(in: $0, at: 0) }) < id { lo = mid + 1 } else { hi = mid }
        }
        guard lo < hi else { return false }
        // Equal ids may run past the bucket's end only within it, so the bucket holds them all.
        let count = hi - lo
        return withUnsafeTemporaryAllocation(byteCount: count * size, alignment: 16) { buffer in
            guard (try? file.pread(into: buffer, count: count * size, at: UInt64(entriesOffset + lo * size))) != nil else { return false }
            let b = UnsafeRawBufferPointer(buffer)
            var l = 0, h = count
            while l < h {
                let mid = (l + h) / 2
                if Self.id(in: b, at: mid * size) < id { l = mid + 1 } else { h = mid }
            }
            while l < count && Self.id(in: b, at: l * size) == id {
                if let e = entry(in: b, at: l * size), body(e) { return true }
                l += 1
            }
            return false
        }
    }
}

/// Writes a multi-pack index by merging pack indexes read through small buffers, so memory
/// stays near 8 KiB per pack whatever their size. Every pack index is checked as it is read
/// (checksum, sorting, bounds), as `PackIndex.decode` would.
enum MultiPackIndexWriter {
    struct Result {
        var packs: Int
        var entries: UInt64
        var checksum: SHA256Digest
    }

    /// Merges the indexes of `packs` (sorted by id) into `output` (when given) and returns the
    /// index's checksum: with no output, only the checksum the file would have.
    static func write(packs: [(id: PackID, indexPath: String)], to output: FileDescriptor?) throws -> Result {
        let cursors = try packs.enumerated().map { n, p in try PackIndexCursor(path: p.indexPath, packNumber: n) }
        let entries = cursors.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        guard entries <= UInt64(UInt32.max) else {
            throw SLMError.failed("\(entries) chunk records are more than one multi-pack index holds (\(UInt32.max))")
        }
        let out = HashingWriter(output)
        var header = ByteWriter(capacity: MultiPackFormat.headerSize)
        header.raw(MultiPackFormat.magic)
        header.u32(MultiPackFormat.version)
        header.u32(UInt32(packs.count))
        header.u64(entries)
        try out.write(header.bytes)
        for p in packs { try out.write(Hex.decode(p.id.hex)!) }
        for c in cursors {
            var w = ByteWriter(capacity: 8)
            w.u64(c.packSize)
            try out.write(w.bytes)
        }

        // k-way merge on (id, pack number): a binary min-heap of the cursors with entries left.
        var heap = try cursors.filter { try $0.advance() }
        func less(_ a: PackIndexCursor, _ b: PackIndexCursor) -> Bool {
            a.current.id != b.current.id ? a.current.id < b.current.id : a.packNumber < b.packNumber
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && less(heap[l], heap[m]) { m = l }
                if r < heap.count && less(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        var fanOut = [UInt32](repeating: 0, count: MultiPackFormat.fanOutBuckets)
        var entry = [UInt8](repeating: 0, count: MultiPackFormat.entrySize)
        while let top = heap.first {
            let e = top.current
            fanOut[Int(e.id.high >> 48)] += 1
            entry.withUnsafeMutableBytes { p in
                p.storeBytes(of: e.id.high.bigEndian, toByteOffset: 0, as: UInt64.self)
                p.storeBytes(of: e.id.low.bigEndian, toByteOffset: 8, as: UInt64.self)
                p.storeBytes(of: e.offset.littleEndian, toByteOffset: 16, as: UInt64.self)
                p.storeBytes(of: e.storedLength.littleEndian, toByteOffset: 24, as: UInt32.self)
                p.storeBytes(of: e.rawLength.littleEndian, toByteOffset: 28, as: UInt32.self)
                p.storeBytes(of: UInt32(top.packNumber).littleEndian, toByteOffset: 32, as: UInt32.self)
                p.storeBytes(of: UInt32(e.codec.rawValue).littleEndian, toByteOffset: 36, as: UInt32.self)
            }
            try out.write(entry)
            if try top.advance() {
                siftDown(0)
            } else {
                heap.swapAt(0, heap.count - 1)
                heap.removeLast()
                siftDown(0)
            }
        }
        var total: UInt32 = 0
        var w = ByteWriter(capacity: MultiPackFormat.fanOutSize)
        for b in 0..<MultiPackFormat.fanOutBuckets {
            total += fanOut[b]
            w.u32(total)
        }
        try out.write(w.bytes)
        let checksum = try out.finish()
        return Result(packs: packs.count, entries: entries, checksum: checksum)
    }
}

/// Buffers writes to an optional file and hashes everything written; `finish` appends the hash.
private final class HashingWriter {
    private let file: FileDescriptor?
    private let hasher = SHA256Hasher()
    private var pending: [UInt8] = []

    init(_ file: FileDescriptor?) {
        self.file = file
        pending.reserveCapacity(1 << 20)
    }

    func write(_ bytes: [UInt8]) throws {
        pending.append(contentsOf: bytes)
        if pending.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        hasher.update(pending)
        try file?.write(pending)
        pending.removeAll(keepingCapacity: true)
    }

    func finish() throws -> SHA256Digest {
        try flush()
        let digest = hasher.finish()
        try file?.write(digest.bytes)
        return digest
    }
}
