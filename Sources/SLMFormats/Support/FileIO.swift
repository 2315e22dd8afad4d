// Thin POSIX file access: an owned descriptor, durable atomic replacement of small files,
// and directory helpers. Foundation's FileHandle hides errno and short reads, so we do not use it here.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file; closed when the last reference goes away.
public final class FileDescriptor: Sendable {
    /// The descriptor.
    public let fd: Int32
    /// The path it was opened at, for messages.
    public let path: String

    /// Opens `path` with open(2) `flags` (close-on-exec added); the error carries errno.
    public init(path: String, flags: Int32, mode: mode_t = 0o644) throws {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SLMError.io(path: path, operation: "open", errno: errno) }
        self.fd = fd
        self.path = path
    }

    /// Opens `path` read-only; only a regular file. Opened without blocking, so a FIFO planted
    /// where a file was expected (a report, a ref) is refused at once instead of hanging the
    /// reader until someone writes into it; the flag is dropped again for the reads.
    public static func openForReading(_ path: String) throws -> FileDescriptor {
        let file = try FileDescriptor(path: path, flags: O_RDONLY | O_NONBLOCK)
        var st = stat()
        guard fstat(file.fd, &st) == 0 else { throw SLMError.io(path: path, operation: "stat", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SLMError.damaged(path: path, problem: "not a regular file (a directory, FIFO, socket or device); refusing to read it")
        }
        _ = fcntl(file.fd, F_SETFL, fcntl(file.fd, F_GETFL) & ~O_NONBLOCK)
        return file
    }

    deinit { close(fd) }

    /// The file's current size.
    public func size() throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SLMError.io(path: path, operation: "stat", errno: errno) }
        return UInt64(st.st_size)
    }

    /// Reads exactly `count` bytes at `offset`, or throws if the file is shorter.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: UInt64) throws {
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SLMError.io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { throw SLMError.damaged(path: path, problem: "file ends before byte \(offset + UInt64(count))") }
            done += n
        }
    }

    /// Hands the first `count` bytes to `body` in order, a fixed 4 MiB buffer at a time.
    public func readBlocks(count: UInt64, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try readBlocks(0..<count, blockSize: 4 << 20, body)
    }

    /// Hands the bytes `range` to `body` in order, one reused buffer of at most `blockSize` at a time.
    public func readBlocks(_ range: Range<UInt64>, blockSize: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let size = Int(min(UInt64(blockSize), UInt64(range.count)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { buffer.deallocate() }
        var at = range.lowerBound
        while at < range.upperBound {
            let n = Int(min(UInt64(size), range.upperBound - at))
            try pread(into: buffer, count: n, at: at)
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            at += UInt64(n)
        }
    }

    /// Exactly `count` bytes at `offset`, or an error if the file is shorter.
    public func pread(count: Int, at offset: UInt64) throws -> [UInt8] {
        // Not zero-filled first: pread(into:) fills every byte or throws.
        try [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            try pread(into: UnsafeMutableRawBufferPointer(buf), count: count, at: offset)
            initialized = count
        }
    }

    /// Writes all of `buffer` at the current position, retrying short writes and EINTR.
    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw SLMError.io(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }

    /// Writes all of `bytes` at the current position.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Starts writeback of a written range without waiting for it, so the final fsync finds
    /// little left to do and disk writes overlap with computation (Linux only; a no-op elsewhere).
    public func startWriteback(offset: UInt64, count: Int) {
        guard let f = FileDescriptor.syncFileRange else { return }
        _ = f(fd, Int64(offset), Int64(count), 2)  // SYNC_FILE_RANGE_WRITE
    }

    /// glibc's sync_file_range, looked up at run time: Swift's Glibc module hides it (it needs
    /// _GNU_SOURCE).
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    private static let syncFileRange: SyncFileRange? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range") else { return nil }
        return unsafeBitCast(sym, to: SyncFileRange.self)
    }()

    /// fsync: the written bytes are on disk when this returns.
    public func sync() throws {
        guard fsync(fd) == 0 else { throw SLMError.io(path: path, operation: "fsync", errno: errno) }
    }

}

/// Path operations over POSIX calls, with errors that name the path and the operation.
public enum FileSystem {
    /// Whether anything is at `path`.
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether `path` is a directory (following symlinks).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Whether `path` is a regular file (following symlinks).
    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// The size of the file at `path`, or nil when it cannot be stat'ed.
    public static func fileSize(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_size)
    }

    /// mkdir -p, fsyncing each parent that gained an entry so the new directories survive a crash.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if isDirectory(path) { return }
        let parent = dirname(path)
        if parent != path { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw SLMError.io(path: path, operation: "mkdir", errno: errno)
        }
        try syncDirectory(parent)
    }

    /// fsync of a directory, so entries just created or renamed in it survive a crash.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path.isEmpty ? "." : path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SLMError.io(path: path, operation: "open directory", errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SLMError.io(path: path, operation: "fsync directory", errno: errno) }
    }

    /// rename(2): atomic replacement of `to` within a filesystem.
    public static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw SLMError.io(path: to, operation: "rename", errno: errno) }
    }

    /// Unlinks a file; an absent one is not an error.
    public static func remove(_ path: String) { unlink(path) }

    /// Removes a directory tree (used for temporary working directories only).
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            // What cannot be listed stays; rmdir then fails and leaves the directory too.
            for name in (try? listDirectory(path)) ?? [] { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// The names in a directory (without `.` and `..`), sorted.
    public static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SLMError.io(path: path, operation: "list", errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// A whole file, refused as damaged when larger than `limit` (checked before reading).
    public static func readFile(_ path: String, limit: Int) throws -> [UInt8] {
        let file = try FileDescriptor.openForReading(path)
        let size = try file.size()
        guard size <= UInt64(limit) else {
            throw SLMError.damaged(path: path, problem: "\(size) bytes, more than the \(limit) allowed")
        }
        return try file.pread(count: Int(size), at: 0)
    }

    /// A cache file's bytes, or nil when it cannot serve: absent, unreadable or larger than
    /// `limit` all mean the same to a cache (compute again), so no error is worth reporting.
    package static func readCacheFile(_ path: String, limit: Int) -> [UInt8]? {
        do { return try readFile(path, limit: limit) } catch { return nil }
    }

    /// Replaces a cache file by rename, without fsync: after a crash it is either whole, absent,
    /// or fails to parse and is computed again. Returns whether it was written; a cache that
    /// cannot be written (full disk, read-only directory) costs only the recomputation, so the
    /// error goes no further.
    @discardableResult
    package static func writeCacheFile(_ bytes: [UInt8], to path: String) -> Bool {
        let dir = dirname(path)
        let tmp = "\(dir)/.tmp-\(randomHex(8))"
        do {
            if !isDirectory(dir) { try makeDirectories(dir) }
            let file = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL)
            try file.write(bytes)
            try rename(tmp, path)
            return true
        } catch {
            unlink(tmp)
            return false
        }
    }

    /// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part:
    /// temporary file beside it, fsync, rename, fsync of the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        try replaceAtomically(path, mode: mode) { try $0.write(bytes) }
    }

    /// Like `writeAtomically`, with the bytes of an open file, copied through a fixed buffer;
    /// with `sha256`, nothing is put in place unless the copied bytes hash to it.
    public static func copyAtomically(from source: FileDescriptor, to path: String, mode: mode_t = 0o644, sha256: SHA256Digest? = nil) throws {
        try replaceAtomically(path, mode: mode) { target in
            let hasher = SHA256Hasher()
            try source.readBlocks(count: try source.size()) { block in
                hasher.update(block)
                try target.write(block)
            }
            if let sha256, hasher.finish() != sha256 {
                throw SLMError.damaged(path: source.path, problem: "content does not hash to its id \(sha256.hex)")
            }
        }
    }

    private static func replaceAtomically(_ path: String, mode: mode_t, fill: (FileDescriptor) throws -> Void) throws {
        let dir = dirname(path)
        let tmp = "\(dir)/.tmp-\(randomHex(8))-\(basename(path))"
        do {
            let file = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode)
            try fill(file)
            try file.sync()
            try rename(tmp, path)
        } catch {
            unlink(tmp)
            throw error
        }
        try syncDirectory(dir)
    }

    /// Copies `count` bytes from the start of `source` to `target` through a fixed 4 MiB buffer.
    public static func copy(from source: FileDescriptor, to target: FileDescriptor, count: UInt64, what: String) throws {
        try source.readBlocks(count: count) { try target.write($0) }
    }

    /// The directory part of `path` (`.` when it has none).
    public static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The last component of `path`.
    public static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// `byteCount` random bytes as hex, for temporary and pack names.
    public static func randomHex(_ byteCount: Int) -> String {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<byteCount { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        return Hex.encode(bytes)
    }

    /// `path` made absolute against the working directory (not resolved further).
    public static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let ok = buf.withUnsafeMutableBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { getcwd($0, p.count) != nil }
        }
        guard ok else { return path }
        let cwd = String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
        return cwd == "/" ? "/" + path : cwd + "/" + path
    }
}

/// An advisory lock on a file (flock): shared for writers that add data, exclusive for
/// operations that must see the store still (gc, ref updates). Released on deinit or process death.
public final class FileLock: Sendable {
    private let file: FileDescriptor

    /// Shared (many holders) or exclusive (one).
    public enum Mode { case shared, exclusive }

    /// Blocks until the lock is held.
    public init(path: String, mode: Mode) throws {
        file = try FileDescriptor(path: path, flags: O_RDWR | O_CREAT, mode: 0o644)
        while flock(file.fd, mode == .shared ? LOCK_SH : LOCK_EX) != 0 {
            if errno == EINTR { continue }
            throw SLMError.io(path: path, operation: "lock", errno: errno)
        }
    }

    /// Returns nil if another process holds a conflicting lock.
    public init?(tryPath path: String, mode: Mode) throws {
        file = try FileDescriptor(path: path, flags: O_RDWR | O_CREAT, mode: 0o644)
        if flock(file.fd, (mode == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { return nil }
            throw SLMError.io(path: path, operation: "lock", errno: errno)
        }
    }

    /// Like `init?(tryPath:mode:)` but never creates the lock file; nil if it does not exist.
    public init?(tryExisting path: String, mode: Mode) throws {
        guard let f = try? FileDescriptor(path: path, flags: O_RDWR) else { return nil }
        file = f
        if flock(file.fd, (mode == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { return nil }
            throw SLMError.io(path: path, operation: "lock", errno: errno)
        }
    }

    /// Releases the lock before the object goes away.
    public func unlock() { flock(file.fd, LOCK_UN) }
}

/// Returning freed heap to the system (glibc's malloc_trim, looked up at run time: Swift's Glibc
/// module does not export it; a no-op elsewhere).
public enum HeapRelease {
    private typealias Trim = @convention(c) (Int) -> Int32
    private static let trim: Trim? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(sym, to: Trim.self)
    }()

    /// Returns the heap's free pages to the system now.
    public static func now() { _ = trim?(0) }

    /// Hands back the code pages this process faulted in from its binary and libraries. A sync
    /// round runs some 15 MiB of them (the kernel maps 64 KiB around each fault). Executable
    /// mappings are never written (a debugger's breakpoints aside), so dropping them loses
    /// nothing: they stay in the page cache, where the kernel may reclaim them, and the next
    /// round faults in again only what it runs. Writable and read-only data mappings are left
    /// alone (relocated data lives there), as is anonymous memory.
    public static func releaseCodePages() {
        // /proc files report no size: read to the end.
        let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        var maps: [UInt8] = []
        var block = [UInt8](repeating: 0, count: 64 << 10)
        while maps.count < 4 << 20 {
            let n = block.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            maps += block[0..<n]
        }
        close(fd)
        for line in String(decoding: maps, as: UTF8.self).split(separator: "\n") {
            // start-end perms offset dev inode path; inode 0 is anonymous memory.
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "r-xp", fields[4] != "0", fields[5].hasPrefix("/") else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start,
                  let address = UnsafeMutableRawPointer(bitPattern: start) else { continue }
            _ = madvise(address, Int(end - start), MADV_DONTNEED)
        }
    }

    private typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
    private static let mallopt: MallOpt? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return nil }
        return unsafeBitCast(sym, to: MallOpt.self)
    }()

    /// Caps glibc's malloc arenas (M_ARENA_MAX). By default every thread that allocates gets an
    /// arena of its own, and each keeps what it freed: a pull's four transfer threads (and the
    /// HTTP stack's, when it was URLSession) then held several copies of their peak. One arena measured 320 -> 193 MiB
    /// peak RSS for a 1 GiB pull at the same speed. Call before threads start.
    public static func limitArenas(_ n: Int32) { _ = mallopt?(-8, n) }

    /// Fixes glibc's mmap threshold (M_MMAP_THRESHOLD) at `bytes`: blocks that large are mapped
    /// on their own and go back to the system when freed. Left alone, glibc raises the threshold
    /// to the largest block freed so far, so once a 1 MiB read buffer has come and gone, every
    /// later one (and every large record) lands in the shared heap, which threads keep from
    /// shrinking: a pull from a path remote, reading 1 MiB at a time on four threads, peaked at
    /// 72-80 MiB instead of 45 (an HTTP pull, whose pieces are 16 KiB, never raised it).
    public static func fixMmapThreshold(_ bytes: Int32) { _ = mallopt?(-3, bytes) }
}
