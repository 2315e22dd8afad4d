// Pack files hold chunk records back to back; a pack index maps chunk ids to records.
// A pack is visible to readers only once its index exists (the index is the commit point).

import SLMFormats
import Foundation

/// The constants of the pack and pack index formats (Format.md).
public enum PackFormat {
    /// The eight bytes a pack file starts with.
    public static let packMagic: [UInt8] = Array("SLMPACK\0".utf8)
    /// The eight bytes a pack index starts with.
    public static let indexMagic: [UInt8] = Array("SLMIDX\0\0".utf8)
    /// The pack and index format this build writes and reads.
    public static let version: UInt32 = 1
    /// Bytes before a pack's first record: magic(8), version(4), reserved(4).
    public static let packHeaderSize = 16
    /// id(16) codec(1) reserved(3) raw length(4) stored length(4)
    public static let recordHeaderSize = 28
    /// Bytes before an index's first entry.
    public static let indexHeaderSize = 24
    /// Bytes of one index entry: id(16) offset(8) stored length(4) raw length(4) codec(1)
    /// reserved(3).
    public static let indexEntrySize = 36
    /// Bytes a record occupies in a pack: its header and the stored payload.
    @inline(__always)
    public static func recordSize(_ storedLength: UInt32) -> UInt64 { UInt64(recordHeaderSize) + UInt64(storedLength) }

    /// Largest raw chunk any reader accepts; bounds allocation for hostile input.
    public static let maxChunkLength: UInt32 = ChunkCodec.maxChunkLength

    static func recordHeader(id: ChunkID, codec: ChunkCodec, rawLength: UInt32, storedLength: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: recordHeaderSize)
        w.raw(id.canonicalBytes)
        w.u8(codec.rawValue)
        w.raw([0, 0, 0])
        w.u32(rawLength)
        w.u32(storedLength)
        return w.bytes
    }

    struct RecordHeader: Equatable {
        var id: ChunkID
        var codec: ChunkCodec
        var rawLength: UInt32
        var storedLength: UInt32
    }

    static func parseRecordHeader(_ b: [UInt8], source: String) throws -> RecordHeader {
        guard b.count >= recordHeaderSize else { throw SLMError.damaged(path: source, problem: "short chunk record header") }
        let id = ChunkID(canonical: b[0..<16])!
        guard let codec = ChunkCodec(rawValue: b[16]) else {
            throw SLMError.damaged(path: source, problem: "unknown codec \(b[16]) for chunk \(id)")
        }
        return RecordHeader(id: id, codec: codec, rawLength: b.readLE(UInt32.self, at: 20), storedLength: b.readLE(UInt32.self, at: 24))
    }
}

/// Where one chunk lives: in which pack, at which offset (of its record header), how long.
public struct ChunkLocation: Equatable, Sendable {
    /// The pack that holds the record.
    public var pack: PackID
    /// Offset of the record's header in the pack.
    public var offset: UInt64
    /// Length of the stored payload.
    public var storedLength: UInt32
    /// Length of the chunk once decoded.
    public var rawLength: UInt32
    /// The codec the payload is in.
    public var codec: ChunkCodec

    /// Byte range of the whole record (header and payload) in the pack.
    public var recordRange: Range<UInt64> { offset..<(offset + PackFormat.recordSize(storedLength)) }
}

/// One entry of a pack index: a chunk's record in that pack.
public struct PackIndexEntry: Equatable, Sendable {
    /// The chunk's id.
    public var id: ChunkID
    /// Offset of the record's header in the pack.
    public var offset: UInt64
    /// Length of the stored payload.
    public var storedLength: UInt32
    /// Length of the chunk once decoded.
    public var rawLength: UInt32
    /// The codec the payload is in.
    public var codec: ChunkCodec

    /// An entry from its fields.
    public init(id: ChunkID, offset: UInt64, storedLength: UInt32, rawLength: UInt32, codec: ChunkCodec) {
        self.id = id
        self.offset = offset
        self.storedLength = storedLength
        self.rawLength = rawLength
        self.codec = codec
    }

    /// Byte range of the whole record (header and payload) in the pack.
    public var recordRange: Range<UInt64> { offset..<(offset + PackFormat.recordSize(storedLength)) }
    /// The entry as a location in `pack`.
    public func location(in pack: PackID) -> ChunkLocation {
        ChunkLocation(pack: pack, offset: offset, storedLength: storedLength, rawLength: rawLength, codec: codec)
    }

    /// The entry encoded at `at` in a pack index's bytes (Format.md §6), checked.
    static func parse(_ b: [UInt8], at: Int, packSize: UInt64) -> Result<PackIndexEntry, PackIndexEntryProblem> {
        checked(id: ChunkID(canonical: b[at..<at + 16])!, offset: b.readLE(UInt64.self, at: at + 16),
                storedLength: b.readLE(UInt32.self, at: at + 24), rawLength: b.readLE(UInt32.self, at: at + 28),
                codecByte: b[at + 32], packSize: packSize)
    }

    /// The entry these fields make, or why they cannot describe a record of a pack of
    /// `packSize` bytes (Format.md §6): the one check for pack and multi-pack index entries.
    static func checked(id: ChunkID, offset: UInt64, storedLength: UInt32, rawLength: UInt32, codecByte: UInt8,
                        packSize: UInt64) -> Result<PackIndexEntry, PackIndexEntryProblem> {
        guard let codec = ChunkCodec(rawValue: codecByte) else { return .failure(.init("unknown codec \(codecByte) for chunk \(id)")) }
        guard rawLength > 0, rawLength <= PackFormat.maxChunkLength, storedLength <= PackFormat.maxChunkLength + 1024 else {
            return .failure(.init("chunk \(id) has implausible lengths raw=\(rawLength) stored=\(storedLength)"))
        }
        guard offset >= UInt64(PackFormat.packHeaderSize), offset <= packSize, PackFormat.recordSize(storedLength) <= packSize - offset else {
            return .failure(.init("chunk \(id) lies outside the pack"))
        }
        return .success(PackIndexEntry(id: id, offset: offset, storedLength: storedLength, rawLength: rawLength, codec: codec))
    }
}

struct PackIndexEntryProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The index of one pack: entries sorted by chunk id, plus the pack's total size.
public struct PackIndex: Sendable {
    /// Size of the pack file in bytes.
    public var packSize: UInt64
    /// Entries sorted by chunk id.
    public var entries: [PackIndexEntry]
    /// The SHA-256 trailer of the encoded index, when it was decoded (what manifests list).
    public var checksum: SHA256Digest?

    /// 128 MiB: 3.7 million entries, far beyond any pack a writer makes (256 MiB packs of chunks
    /// of 16 KiB and up), and small enough that a hostile index cannot exhaust a device's memory.
    public static let maxEncodedSize = 128 << 20

    /// An index of `entries` (sorted here) for a pack of `packSize` bytes.
    public init(packSize: UInt64, entries: [PackIndexEntry]) {
        self.packSize = packSize
        self.entries = entries.sorted { $0.id < $1.id }
    }

    /// For entries already checked to be in id order: no sorted copy (an index of small chunks
    /// holds a hundred thousand entries, read once per planning window).
    private init(packSize: UInt64, sortedEntries: [PackIndexEntry]) {
        self.packSize = packSize
        entries = sortedEntries
    }

    /// The encoding Format.md specifies, ending in the SHA-256 of what precedes it.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: PackFormat.indexHeaderSize + entries.count * PackFormat.indexEntrySize + 32)
        w.raw(PackFormat.indexMagic)
        w.u32(PackFormat.version)
        w.u32(UInt32(entries.count))
        w.u64(packSize)
        for e in entries {
            w.raw(e.id.canonicalBytes)
            w.u64(e.offset)
            w.u32(e.storedLength)
            w.u32(e.rawLength)
            w.u8(e.codec.rawValue)
            w.raw([0, 0, 0])
        }
        w.raw(SHA256Hasher.hash(w.bytes).bytes)
        return w.bytes
    }

    /// Decodes and checks an index: checksum, sorting, records inside the pack.
    public static func decode(_ b: [UInt8], source: String) throws -> PackIndex {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "pack index: \(p)") }
        guard b.count >= PackFormat.indexHeaderSize + 32 else { throw bad("too short (\(b.count) bytes)") }
        guard Array(b[0..<8]) == PackFormat.indexMagic else { throw bad("bad magic") }
        let version = b.readLE(UInt32.self, at: 8)
        guard version == PackFormat.version else { throw bad("format version \(version) is not supported (this build reads \(PackFormat.version))") }
        let count = Int(b.readLE(UInt32.self, at: 12))
        let packSize = b.readLE(UInt64.self, at: 16)
        guard b.count == PackFormat.indexHeaderSize + count * PackFormat.indexEntrySize + 32 else {
            throw bad("size \(b.count) does not match \(count) entries")
        }
        let body = b.count - 32
        let h = SHA256Hasher()
        b.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
        let checksum = h.finish()
        guard checksum.bytes == Array(b[body...]) else { throw bad("checksum mismatch") }
        var entries: [PackIndexEntry] = []
        entries.reserveCapacity(count)
        var at = PackFormat.indexHeaderSize
        for _ in 0..<count {
            let entry: PackIndexEntry
            switch PackIndexEntry.parse(b, at: at, packSize: packSize) {
            case let .success(e): entry = e
            case let .failure(p): throw bad(p.message)
            }
            if let last = entries.last, !(last.id < entry.id) { throw bad("entries not sorted and unique at \(entry.id)") }
            entries.append(entry)
            at += PackFormat.indexEntrySize
        }
        var index = PackIndex(packSize: packSize, sortedEntries: entries)
        index.checksum = checksum
        return index
    }
}

/// Reads one pack index entry by entry through an 8 KiB buffer, checking it as it goes.
package final class PackIndexCursor {
    let path: String
    let packNumber: Int
    let count: Int
    let packSize: UInt64
    /// The entry the cursor is on.
    package private(set) var current = PackIndexEntry(id: ChunkID(high: 0, low: 0), offset: 0, storedLength: 0, rawLength: 0, codec: .raw)
    private let file: FileDescriptor
    private let hasher = SHA256Hasher()
    private var buffer: [UInt8] = []
    private var bufferAt = 0
    private var nextEntry = 0
    private var fileOffset = UInt64(PackFormat.indexHeaderSize)
    private let bufferEntries: Int

    /// The trailer, once `advance` has returned false (and checked it).
    private(set) var checksum: SHA256Digest?

    /// `bufferBytes`: 8 KiB by default, since a multi-pack index write opens one per pack.
    package init(path: String, packNumber: Int = 0, bufferBytes: Int = 8192) throws {
        bufferEntries = max(1, bufferBytes / PackFormat.indexEntrySize)
        self.path = path
        self.packNumber = packNumber
        file = try FileDescriptor.openForReading(path)
        let header = try file.pread(count: PackFormat.indexHeaderSize, at: 0)
        func bad(_ p: String) -> SLMError { .damaged(path: path, problem: "pack index: \(p)") }
        guard Array(header[0..<8]) == PackFormat.indexMagic else { throw bad("bad magic") }
        guard header.readLE(UInt32.self, at: 8) == PackFormat.version else { throw bad("format version is not supported") }
        count = Int(header.readLE(UInt32.self, at: 12))
        packSize = header.readLE(UInt64.self, at: 16)
        let size = try file.size()
        guard size == UInt64(PackFormat.indexHeaderSize + count * PackFormat.indexEntrySize + 32) else {
            throw bad("size \(size) does not match \(count) entries")
        }
        hasher.update(header)
    }

    /// Moves to the next entry; false (after checking the checksum) when there is none.
    package func advance() throws -> Bool {
        func bad(_ p: String) -> SLMError { .damaged(path: path, problem: "pack index: \(p)") }
        if checksum != nil { return false }
        if nextEntry == count {
            let trailer = try file.pread(count: 32, at: fileOffset)
            guard hasher.finish().bytes == trailer else { throw bad("checksum mismatch") }
            checksum = SHA256Digest(bytes: trailer)
            return false
        }
        if bufferAt == buffer.count {
            let n = min(bufferEntries, count - nextEntry) * PackFormat.indexEntrySize
            buffer = try file.pread(count: n, at: fileOffset)
            hasher.update(buffer)
            fileOffset += UInt64(n)
            bufferAt = 0
        }
        let entry: PackIndexEntry
        switch PackIndexEntry.parse(buffer, at: bufferAt, packSize: packSize) {
        case let .success(e): entry = e
        case let .failure(p): throw bad(p.message)
        }
        if nextEntry > 0 && !(current.id < entry.id) { throw bad("entries not sorted and unique at \(entry.id)") }
        current = entry
        bufferAt += PackFormat.indexEntrySize
        nextEntry += 1
        return true
    }

    /// Checks a whole index file (structure, order, entries, trailer) entry by entry, without
    /// holding it: its checksum.
    package static func check(_ path: String, bufferBytes: Int = 8192) throws -> SHA256Digest {
        let cursor = try PackIndexCursor(path: path, bufferBytes: bufferBytes)
        while try cursor.advance() {}
        return cursor.checksum!
    }
}

/// Appends chunk records to a new pack file in a working directory, then writes its index.
/// Writes happen on a background queue (at most two buffers in flight), so the caller's threads
/// keep compressing while the kernel copies the previous few MiB. Unchecked: appends come from
/// one thread at a time (callers serialize), the queue owns the file, errors sit under a lock.
package final class PackWriter: @unchecked Sendable {
    /// The pack's id (its file name).
    package let id: PackID
    let packPath: String
    let indexPath: String
    private let file: FileDescriptor
    private(set) var size: UInt64
    /// The records appended so far, in pack order.
    package private(set) var entries: [PackIndexEntry] = []
    private var pending: [UInt8] = []
    /// Bytes gathered per write: one syscall per batch rather than per chunk. At most three
    /// batches are held (one filling, two being written).
    public static let defaultWriteBatchBytes = 4 << 20
    let writeBatchBytes: Int
    private let writes = DispatchQueue(label: "slmstore.pack-writer")
    private let inFlight = DispatchSemaphore(value: 2)
    private let errorLock = NSLock()
    private var writeError: Error?

    init(directory: String, writeBatchBytes: Int = PackWriter.defaultWriteBatchBytes) throws {
        self.writeBatchBytes = writeBatchBytes
        id = PackID.random()
        packPath = "\(directory)/\(id.hex).pack"
        indexPath = "\(directory)/\(id.hex).idx"
        file = try FileDescriptor(path: packPath, flags: O_WRONLY | O_CREAT | O_EXCL)
        var w = ByteWriter(capacity: PackFormat.packHeaderSize)
        w.raw(PackFormat.packMagic)
        w.u32(PackFormat.version)
        w.u32(0)
        pending = w.bytes
        size = UInt64(PackFormat.packHeaderSize)
    }

    var isEmpty: Bool { entries.isEmpty }

    /// Forgets the records' index once it is durable, for a pack held only to be moved later:
    /// a holder of many sealed packs then needs memory per pack, not per record.
    func forgetEntries() { entries = [] }

    func append(id: ChunkID, rawLength: UInt32, encoded: EncodedChunk) throws {
        let header = PackFormat.recordHeader(id: id, codec: encoded.codec, rawLength: rawLength,
                                             storedLength: UInt32(encoded.payload.count))
        entries.append(PackIndexEntry(id: id, offset: size, storedLength: UInt32(encoded.payload.count),
                                      rawLength: rawLength, codec: encoded.codec))
        pending.append(contentsOf: header)
        pending.append(contentsOf: encoded.payload)
        size += UInt64(header.count + encoded.payload.count)
        if pending.count >= writeBatchBytes { try flush() }
    }

    func flush() throws {
        try checkWriteError()
        guard !pending.isEmpty else { return }
        let chunk = pending
        let offset = size - UInt64(chunk.count)
        pending = []
        // A batch ends at the first record past the limit: room for that one without doubling.
        pending.reserveCapacity(writeBatchBytes + Int(PackFormat.recordSize(UInt32(ChunkerParameters.default.maxSize))))
        inFlight.wait()
        writes.async { [self] in
            defer { inFlight.signal() }
            do {
                try file.write(chunk)
                file.startWriteback(offset: offset, count: chunk.count)
            } catch {
                errorLock.lock()
                if writeError == nil { writeError = error }
                errorLock.unlock()
            }
        }
    }

    private func checkWriteError() throws {
        errorLock.lock()
        defer { errorLock.unlock() }
        if let writeError { throw writeError }
    }

    /// Makes pack and index durable in the working directory; returns the index.
    func finish() throws -> PackIndex {
        try flush()
        writes.sync {}
        try checkWriteError()
        try file.sync()
        let index = PackIndex(packSize: size, entries: entries)
        let idx = try FileDescriptor(path: indexPath, flags: O_WRONLY | O_CREAT | O_EXCL)
        try idx.write(index.encoded())
        try idx.sync()
        // A sealed pack may wait for its commit (add commits them all at the end): its 4 MiB
        // write batch must not wait with it, or memory grows with the input.
        pending = []
        return index
    }
}
