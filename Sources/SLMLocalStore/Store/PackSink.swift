// Where new chunk records go: one open pack in a working directory, sealed (made durable) once it
// has reached its target size at a boundary the caller marks, and handed to a commit step that
// the caller chooses: into the store's packs/ now, kept for a later commit, or uploaded.

import SLMFormats
import Foundation

/// The one owner of a write's open pack: appends records, seals packs at the caller's boundaries and hands them to the commit step the caller chose.
package final class PackSink {
    let directory: String
    let rolloverSize: UInt64
    let writeBatchBytes: Int
    private let commit: ([PackWriter]) throws -> Void
    private var writer: PackWriter?
    /// Record bytes appended so far (headers and payloads), over every pack.
    private(set) var recordBytes: UInt64 = 0

    /// `commit` receives each sealed, non-empty pack, in order. A seal costs fsyncs, so packs are
    /// sealed only where the caller says a batch ends (`sealIfFull`), never inside one.
    package init(directory: String, rolloverSize: UInt64, writeBatchBytes: Int = PackWriter.defaultWriteBatchBytes,
         commit: @escaping ([PackWriter]) throws -> Void) {
        self.directory = directory
        self.rolloverSize = rolloverSize
        self.writeBatchBytes = writeBatchBytes
        self.commit = commit
    }

    /// Bytes in the open pack.
    var openSize: UInt64 { writer?.size ?? 0 }

    /// Appends an encoded chunk to the open pack (opening one if there is none).
    package func append(id: ChunkID, rawLength: UInt32, encoded: EncodedChunk) throws {
        if writer == nil { writer = try PackWriter(directory: directory, writeBatchBytes: writeBatchBytes) }
        try writer!.append(id: id, rawLength: rawLength, encoded: encoded)
        recordBytes += PackFormat.recordSize(UInt32(encoded.payload.count))
    }

    /// The end of a batch (a block of a file, a range, a chunk): seals the open pack if it has
    /// reached the target size.
    package func sealIfFull() throws {
        if openSize >= rolloverSize { try seal() }
    }

    /// Appends a verified record read from another pack, without recompressing it.
    package func appendRecord(_ record: [UInt8], id: ChunkID, rawLength: UInt32, codec: ChunkCodec) throws {
        try append(id: id, rawLength: rawLength, encoded: EncodedChunk(codec: codec, payload: Array(record[PackFormat.recordHeaderSize...])))
    }

    /// Makes the open pack durable and commits it; an empty one is discarded.
    package func seal() throws {
        guard let w = writer else { return }
        writer = nil
        if w.isEmpty { FileSystem.remove(w.packPath); return }
        _ = try w.finish()
        try commit([w])
    }
}

extension Store {
    /// Moves finished packs from a working directory into packs/: each pack before its index,
    /// since the index is what makes a pack visible.
    package func commitPacks(_ packs: [PackWriter]) throws {
        for pack in packs {
            try FileSystem.rename(pack.packPath, packPath(pack.id))
            CrashPoint.hit("add-between-pack-and-index")
            try FileSystem.rename(pack.indexPath, packIndexPath(pack.id))
        }
        if !packs.isEmpty { try FileSystem.syncDirectory(packsDirectory) }
    }

    /// A sink whose packs land in this store's packs/ as soon as they are sealed.
    func packSink(in directory: String, rolloverSize: UInt64, writeBatchBytes: Int = PackWriter.defaultWriteBatchBytes,
                  afterCommit: @escaping () -> Void = {}) -> PackSink {
        PackSink(directory: directory, rolloverSize: rolloverSize, writeBatchBytes: writeBatchBytes) { [self] packs in
            try commitPacks(packs)
            afterCommit()
        }
    }
}
