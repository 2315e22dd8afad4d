// A store directory reached by path: a local disk, or a shared mount that several publishers
// write. Compare-and-swap holds the directory's refs lock, the same lock a local `slmstore`
// working in that directory takes, so both kinds of writer serialize.

import SLMFormats
import SLMLocalStore
import Foundation

/// A store directory reached by path (a local disk or a shared mount).
public final class LocalBackend: StoreBackend {
    /// The directory.
    public let root: String
    private let counter = TrafficCounter()

    /// A backend for the store directory `root` (nothing is checked yet).
    public init(root: String) { self.root = root }

    /// The directory's path.
    public var location: String { root }
    /// Bytes and reads so far.
    public var traffic: Traffic { counter.snapshot }

    func full(_ path: String) -> String { path.isEmpty ? root : root + "/" + path }

    /// The whole file (nil when absent), refused above `limit` before it is read.
    public func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let p = full(path)
        guard FileSystem.exists(p) else { return nil }
        let bytes = try FileSystem.readFile(p, limit: limit)
        counter.received(bytes.count)
        return bytes
    }

    /// The bytes of `range`, read 1 MiB at a time.
    public func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        let file = try FileDescriptor.openForReading(full(path))
        try file.readBlocks(range, blockSize: 1 << 20, consume)
        counter.received(Int(range.count))
    }

    /// The whole file, read 1 MiB at a time.
    public func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        let file: FileDescriptor
        do { file = try FileDescriptor.openForReading(full(path)) } catch let e as SLMError {
            guard case .io(_, "open", ENOENT) = e.kind else { throw e }
            return false
        }
        let size = try file.size()
        guard size <= UInt64(limit) else {
            throw SLMError.remote(url: "\(location)/\(path)", problem: "\(size) bytes, more than the \(limit) allowed")
        }
        try file.readBlocks(0..<size, blockSize: 1 << 20, consume)
        counter.received(Int(size))
        return true
    }

    /// Size, modification time and inode: an atomic replace (a rename) always changes the inode.
    func validator(of path: String) -> String? {
        var st = stat()
        guard stat(full(path), &st) == 0 else { return nil }
        return "\(st.st_size)-\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)-\(st.st_ino)"
    }

    /// Unchanged while the file's size, modification time and inode are the validator's.
    public func readIfChanged(_ path: String, validator expected: String?, limit: Int) throws -> ConditionalRead {
        guard let v = validator(of: path) else { counter.received(0); return .absent }
        if v == expected { counter.received(0); return .unchanged }
        guard let bytes = try read(path, limit: limit) else { return .absent }
        // Replaced between the stat and the read: no validator, so the next read is a full one.
        return .changed(bytes: bytes, validator: validator(of: path) == v ? v : nil)
    }

    /// Whether the file is there.
    public func exists(_ path: String) throws -> Bool { FileSystem.exists(full(path)) }

    /// Objects are immutable: read-only files make that visible to anyone browsing the remote.
    private func mode(for path: String) -> mode_t { path.hasPrefix("objects/") ? 0o444 : 0o644 }

    /// Temporary file, fsync, rename (objects are made read-only).
    public func write(_ path: String, bytes: [UInt8]) throws {
        let p = full(path)
        try FileSystem.makeDirectories(FileSystem.dirname(p))
        try FileSystem.writeAtomically(bytes, to: p, mode: mode(for: path))
        counter.sent(UInt64(bytes.count))
    }

    /// Copies the local file in through a temporary file, fsync and rename.
    public func upload(_ path: String, fromFile localPath: String) throws {
        let p = full(path)
        let dir = FileSystem.dirname(p)
        try FileSystem.makeDirectories(dir)
        let tmp = "\(dir)/.tmp-\(FileSystem.randomHex(8))-\(FileSystem.basename(p))"
        do {
            let source = try FileDescriptor.openForReading(localPath)
            let size = try source.size()
            let target = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode(for: path))
            try FileSystem.copy(from: source, to: target, count: size, what: localPath)
            try target.sync()
            try FileSystem.rename(tmp, p)
            counter.sent(size)
        } catch {
            unlink(tmp)
            throw error
        }
        try FileSystem.syncDirectory(dir)
    }

    /// Compare-and-swap under the directory's refs lock.
    public func write(_ path: String, bytes: [UInt8], ifMatching expected: String?) throws -> Bool {
        try FileSystem.makeDirectories(root + "/locks")
        let lock = try FileLock(path: root + "/locks/refs.lock", mode: .exclusive)
        defer { lock.unlock() }
        guard validator(of: path) == expected else { return false }
        try write(path, bytes: bytes)
        return true
    }

    /// Paths below `directory`, relative to the store.
    public func list(_ directory: String, recursive: Bool) throws -> [String] {
        let base = full(directory)
        guard FileSystem.isDirectory(base) else { return [] }
        var out: [String] = []
        func walk(_ rel: String) throws {
            let dir = rel.isEmpty ? base : base + "/" + rel
            for name in try FileSystem.listDirectory(dir) where !name.hasPrefix(".") {
                let child = rel.isEmpty ? name : rel + "/" + name
                let prefixed = directory.isEmpty ? child : directory + "/" + child
                if FileSystem.isDirectory(dir + "/" + name) {
                    if recursive { try walk(child) } else { out.append(prefixed) }
                } else {
                    out.append(prefixed)
                }
            }
        }
        try walk("")
        return out
    }

    /// The store's data lock, shared: `slmstore gc` run in that directory waits for it.
    public func publishLease() throws -> AnyObject? {
        try FileSystem.makeDirectories(root + "/locks")
        return try FileLock(path: root + "/locks/data.lock", mode: .shared)
    }

    /// Unlinks the file (absent is fine).
    public func delete(_ path: String) throws {
        guard unlink(full(path)) == 0 || errno == ENOENT else { throw SLMError.io(path: full(path), operation: "unlink", errno: errno) }
    }
}
