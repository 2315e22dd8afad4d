// Reading versions back: stream a file's verified bytes (cat), or write a whole version into a
// directory (checkout). Every chunk is hash-checked and every file's SHA-256 is checked before
// the file is renamed into place, so a damaged store never produces a wrong file.

import SLMFormats
import Foundation

/// What a checkout wrote.
public struct CheckoutResult: Sendable {
    /// Files written.
    public var files: Int
    /// Bytes written.
    public var bytes: UInt64
    /// Wall time.
    public var seconds: Double
}

extension Store {
    /// Bytes decoded per batch when reading files back (two batches are in memory at once).
    public static let checkoutBatchBytes = 16 << 20

    /// The chunks of the next batch of a file (at least one, then as many as fit `batchBytes`),
    /// each with where it is and its offset in the batch; also the batch's bytes.
    private func checkoutBatch(_ refs: inout ChunkList.Iterator, next: inout ChunkRef?, batchBytes: Int, index: ChunkIndex,
                               missing: (ChunkID) -> String) throws -> (batch: [(ref: ChunkRef, loc: ChunkLocation, offset: Int)], used: Int) {
        var batch: [(ref: ChunkRef, loc: ChunkLocation, offset: Int)] = []
        var used = 0
        while let ref = next, batch.isEmpty || used + Int(ref.rawLength) <= batchBytes {
            guard let loc = index.location(of: ref.id) else { throw SLMError.damaged(path: root, problem: missing(ref.id)) }
            guard loc.rawLength == ref.rawLength else {
                throw SLMError.damaged(path: root, problem: "chunk \(ref.id.hex) has length \(loc.rawLength) in the pack index but \(ref.rawLength) in the tree")
            }
            batch.append((ref, loc, used))
            used += Int(ref.rawLength)
            next = try refs.next()
        }
        return (batch, used)
    }

    /// Streams the verified content of `entry` to `sink`, in order. Throws before the last bytes
    /// are delivered if the file's SHA-256 does not match the tree. Batches are double-buffered:
    /// while the chunks of one batch are read and decoded, the previous batch is hashed and
    /// delivered, so both cores stay busy. The two buffers hold `batchBytes` (plus one chunk) each.
    public func streamFile(_ entry: FileEntry, index: ChunkIndex, versionLabel: String, batchBytes: Int = Store.checkoutBatchBytes,
                           progress: ((UInt64) -> Void)? = nil,
                           sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let sha = SHA256Hasher()
        let largest = Int(try entry.chunks.reduce(0) { max($0, $1.rawLength) })
        let capacity = batchBytes + largest
        let buffers = [UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64),
                       UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)]
        defer { buffers.forEach { $0.deallocate() } }
        var refs = entry.chunks.makeIterator()
        var next = try refs.next()   // the first ref not yet in a batch
        var done: UInt64 = 0
        var pending: UnsafeRawBufferPointer? = nil   // decoded, not yet hashed and delivered
        var turn = 0
        while next != nil || pending != nil {
            let (batch, used) = try checkoutBatch(&refs, next: &next, batchBytes: batchBytes, index: index) {
                "chunk \($0.hex) of \(versionLabel) file \(entry.path) is missing from the store"
            }
            let failures = UnsafeMutableBufferPointer<SLMError?>.allocate(capacity: max(1, batch.count))
            failures.initialize(repeating: nil)
            defer { failures.deallocate() }
            nonisolated(unsafe) let out = buffers[turn]
            nonisolated(unsafe) let errs = failures
            nonisolated(unsafe) let previous = pending
            nonisolated(unsafe) var sinkError: Error? = nil
            let items = batch
            let extra = previous == nil ? 0 : 2
            // Contiguous runs of chunks per job: neighbouring delta chunks share base chunks,
            // which each run decodes once, so a run's first base is decoded twice (by it and by
            // the run before). 32 chunks a run keeps that under 4% and still gives a 16 MiB
            // batch eight jobs to balance across cores.
            let runs = (items.count + 31) / 32
            try withoutActuallyEscaping(sink) { sink in
                nonisolated(unsafe) let deliver = sink
                DispatchQueue.concurrentPerform(iterations: runs + extra) { k in
                    if k < extra {
                        if k == 0 { sha.update(previous!) } else { do { try deliver(previous!) } catch { sinkError = error } }
                        return
                    }
                    let run = k - extra
                    let cache = DecodedChunkCache()
                    for j in (items.count * run / runs)..<(items.count * (run + 1) / runs) {
                        let item = items[j]
                        do {
                            try self.readChunk(item.ref.id, at: item.loc,
                                               into: UnsafeMutableRawBufferPointer(rebasing: out[item.offset..<item.offset + Int(item.ref.rawLength)]),
                                               index: index, cache: cache)
                        } catch let e as SLMError {
                            errs[j] = e
                        } catch {
                            errs[j] = .failed("\(error)")
                        }
                    }
                }
                if let sinkError { throw sinkError }
            }
            if let previous {
                done += UInt64(previous.count)
                progress?(done)
            }
            if let k = (0..<items.count).first(where: { failures[$0] != nil }) {
                let users = self.users(of: [items[k].ref.id]).map { "\($0.version) (\($0.file))" }
                throw SLMError.damaged(path: packPath(items[k].loc.pack),
                                       problem: "damaged chunk \(items[k].ref.id.hex): \(failures[k]!.description); used by \(users.joined(separator: ", "))")
            }
            pending = items.isEmpty ? nil : UnsafeRawBufferPointer(rebasing: buffers[turn][0..<used])
            turn ^= 1
        }
        let digest = sha.finish()
        guard digest == entry.sha256 else {
            throw SLMError.fileMismatch(path: root, problem: "\(versionLabel) file \(entry.path) reassembles to SHA-256 \(digest.hex), expected \(entry.sha256.hex)",
                                        chunks: try entry.chunks.map(\.id))
        }
    }

    /// Writes every file of `tree` below `target`. Each file goes to a temporary name, is
    /// verified and fsynced, then renamed; a file that fails verification is never left behind.
    public func checkout(tree: TreeObject, versionLabel: String, to target: String, force: Bool,
                         batchBytes: Int = Store.checkoutBatchBytes,
                         progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> CheckoutResult {
        let started = Timestamp.monotonicSeconds()
        for f in tree.files { try TreePath.validate(f.path, source: "tree of \(versionLabel)") }
        if FileSystem.exists(target) {
            guard FileSystem.isDirectory(target) else { throw SLMError.input(path: target, problem: "exists and is not a directory") }
            if !force, !(try FileSystem.listDirectory(target)).isEmpty {
                throw SLMError.input(path: target, problem: "directory exists and is not empty").remedied(by: .overwrite)
            }
        }
        // A checkout that fails leaves nothing of itself behind where there was nothing before:
        // a directory it created goes, and an empty one it filled is emptied again.
        let created = !FileSystem.exists(target)
        let wasEmpty = try created || FileSystem.listDirectory(target).isEmpty
        try FileSystem.makeDirectories(target)
        do {
            return try writeFiles(of: tree, versionLabel: versionLabel, to: target, batchBytes: batchBytes, progress: progress, started: started)
        } catch {
            if created {
                FileSystem.removeTree(target)
            } else if wasEmpty {
                for name in (try? FileSystem.listDirectory(target)) ?? [] { FileSystem.removeTree("\(target)/\(name)") }
            }
            throw error
        }
    }

    private func writeFiles(of tree: TreeObject, versionLabel: String, to target: String, batchBytes: Int,
                            progress: (@Sendable (UInt64, UInt64) -> Void)?, started: Double) throws -> CheckoutResult {
        let index = try loadChunkIndex()
        let total = tree.totalSize
        var before: UInt64 = 0
        for entry in tree.files {
            let finalPath = try Store.safeDestination(target: target, relative: entry.path)
            let tmp = "\(FileSystem.dirname(finalPath))/.slmstore-tmp-\(FileSystem.randomHex(6))"
            let file = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, mode: 0o644)
            do {
                let base = before
                var written: UInt64 = 0
                try streamFile(entry, index: index, versionLabel: versionLabel, batchBytes: batchBytes,
                               progress: { progress?(base + $0, total) }) { bytes in
                    try file.write(bytes)
                    file.startWriteback(offset: written, count: bytes.count)
                    written += UInt64(bytes.count)
                }
                try file.sync()
                try FileSystem.rename(tmp, finalPath)
            } catch {
                FileSystem.remove(tmp)
                throw error
            }
            before += entry.size
        }
        var dirs = Set(tree.files.map { FileSystem.dirname("\(target)/\($0.path)") })
        dirs.insert(target)
        for d in dirs { try FileSystem.syncDirectory(d) }
        return CheckoutResult(files: tree.files.count, bytes: total, seconds: Timestamp.monotonicSeconds() - started)
    }

    /// The absolute destination of a tree path below `target`, creating parent directories and
    /// refusing to pass through a symlink (which could lead outside the target).
    static func safeDestination(target: String, relative: String) throws -> String {
        try TreePath.validate(relative, source: relative)
        let parts = relative.split(separator: "/").map(String.init)
        var dir = target
        for part in parts.dropLast() {
            dir += "/" + part
            var st = stat()
            if lstat(dir, &st) == 0 {
                guard (st.st_mode & S_IFMT) == S_IFDIR else {
                    throw SLMError.input(path: dir, problem: "is not a directory (a symlink or file is in the way)")
                }
            } else {
                try FileSystem.makeDirectories(dir)
            }
        }
        let dest = dir + "/" + parts.last!
        var st = stat()
        if lstat(dest, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK || (st.st_mode & S_IFMT) == S_IFDIR {
            throw SLMError.input(path: dest, problem: "exists and is a symlink or directory; refusing to replace it")
        }
        return dest
    }

    /// Every (version, file) that uses one of `chunks`, for error messages and verify. Best
    /// effort by design: a version that cannot be read is itself reported by verify.
    public func users(of chunks: Set<ChunkID>) -> [(version: String, file: String, chunk: ChunkID)] {
        var out: [(String, String, ChunkID)] = []
        for model in (try? models()) ?? [] {
            for (v, id) in (try? versions(of: model)) ?? [] {
                do {
                    for f in try readTree(try readVersion(id).tree).files {
                        if let c = try f.chunks.first(where: { chunks.contains($0.id) }) { out.append(("\(model)@\(v)", f.path, c.id)) }
                    }
                } catch {
                    continue
                }
            }
        }
        return out
    }
}
