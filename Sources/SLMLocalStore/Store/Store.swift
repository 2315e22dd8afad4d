// A store on disk: its directories, objects (trees, versions), refs, packs and locks.
// The layout is also a remote's layout, so a store can be served by any static web server.

import SLMFormats
import Foundation
import Synchronization

/// A store directory (Format.md): objects, refs, packs, registry records. Open one with
/// `Store.open(at:)` or create one with `Store.create(at:)`; one object may be shared by
/// threads.
public final class Store: Sendable {
    /// The store's directory.
    public let root: String
    /// The store's configuration (format version, chunker parameters), read when it was opened.
    public let config: StoreConfig

    /// packs/: pack files, their indexes and the multi-pack index.
    public var packsDirectory: String { root + "/packs" }
    /// objects/: version and tree objects, named by their SHA-256.
    public var objectsDirectory: String { root + "/objects" }
    /// refs/: version and stage refs, one directory per model.
    public var refsDirectory: String { root + "/refs" }
    /// registry/: cards, metrics, policies, history and rollouts per model.
    public var registryDirectory: String { root + "/registry" }
    /// tmp/: working directories of operations in progress.
    public var tmpDirectory: String { root + "/tmp" }
    /// locks/: the lock files readers and writers coordinate through.
    public var locksDirectory: String { root + "/locks" }

    /// Open pack files, shared by every reader of this store object.
    private let packFiles = Mutex<[PackID: FileDescriptor]>([:])

    init(root: String, config: StoreConfig) {
        self.root = root
        self.config = config
    }

    /// Opens the store at `root`, which must already be one.
    public static func open(at root: String) throws -> Store {
        let configPath = root + "/config"
        guard FileSystem.exists(configPath) else {
            if !FileSystem.exists(root) { throw SLMError.notFound("\(root): no store here").remedied(by: .createStore(path: root)) }
            throw SLMError.notAStore(path: root, problem: "not a slmstore store (no config file)")
        }
        let config = try StoreConfig.decode(try FileSystem.readFile(configPath, limit: 1 << 20), source: configPath)
        let store = Store(root: root, config: config)
        // A pushed store gets its directories as files arrive in them; supply what is missing.
        for dir in [store.packsDirectory, store.objectsDirectory, store.refsDirectory, store.tmpDirectory, store.locksDirectory]
            where !FileSystem.isDirectory(dir) {
            try FileSystem.makeDirectories(dir)
        }
        return store
    }

    /// Creates a store at `root` (or opens it if it already is one). Refuses a non-empty
    /// directory that is not a store.
    @discardableResult
    public static func create(at root: String, config: StoreConfig = StoreConfig()) throws -> Store {
        if FileSystem.exists(root + "/config") { return try open(at: root) }
        if FileSystem.exists(root) {
            guard FileSystem.isDirectory(root) else { throw SLMError.input(path: root, problem: "exists and is not a directory") }
            // A directory holding only store directories is a store another process is creating
            // right now (the config is written last); creating is idempotent, so join in.
            let layout: Set<String> = ["packs", "objects", "refs", "registry", "tmp", "locks"]
            guard try FileSystem.listDirectory(root).allSatisfy({ layout.contains($0) || $0.hasPrefix(".tmp-") }) else {
                throw SLMError.notAStore(path: root, problem: "directory is not empty and is not a slmstore store")
            }
        }
        try config.chunker.validate()
        try FileSystem.makeDirectories(root)
        let store = Store(root: root, config: config)
        for dir in [store.packsDirectory, store.objectsDirectory, store.refsDirectory, store.registryDirectory,
                    store.tmpDirectory, store.locksDirectory] {
            try FileSystem.makeDirectories(dir)
        }
        // The config is written last: a directory without it is not yet a store.
        try FileSystem.writeAtomically(config.encoded(), to: root + "/config")
        return store
    }

    // MARK: Locks

    /// Held (shared) by every operation that writes packs or objects; gc takes it exclusively,
    /// so it never removes a chunk an unfinished add is about to reference.
    public func dataLock(_ mode: FileLock.Mode) throws -> FileLock {
        try FileLock(path: locksDirectory + "/data.lock", mode: mode)
    }

    /// Serializes ref updates (version refs, stages, registry logs).
    public func refsLock() throws -> FileLock {
        try FileLock(path: locksDirectory + "/refs.lock", mode: .exclusive)
    }

    // MARK: Objects

    /// Where the object `id` is stored: objects/<first two hex digits>/<the rest>.
    public func objectPath(_ id: SHA256Digest) -> String {
        let hex = id.hex
        return "\(objectsDirectory)/\(hex.prefix(2))/\(hex.dropFirst(2))"
    }

    /// Whether the object `id` is stored (its bytes are not read).
    public func hasObject(_ id: SHA256Digest) -> Bool { FileSystem.exists(objectPath(id)) }

    /// Reads an object and checks that its bytes hash to its id.
    public func readObject(_ id: SHA256Digest, limit: Int) throws -> [UInt8] {
        let path = objectPath(id)
        guard FileSystem.exists(path) else { throw SLMError.notFound("object \(id.hex) is missing from the store") }
        let bytes = try FileSystem.readFile(path, limit: limit)
        guard SHA256Hasher.hash(bytes) == id else { throw SLMError.damaged(path: path, problem: "content does not hash to its id \(id.hex)") }
        return bytes
    }

    /// Stores `bytes` as an object (temporary file, fsync, rename) unless it is there already;
    /// returns its id.
    @discardableResult
    public func writeObject(_ bytes: [UInt8]) throws -> SHA256Digest {
        let id = SHA256Hasher.hash(bytes)
        let path = objectPath(id)
        if FileSystem.exists(path) { return id }
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(bytes, to: path, mode: 0o444)
        return id
    }

    /// Stores the object held in `file` under `id`, copying it through a fixed buffer (a large
    /// tree is never held whole) and checking the copy against `id` before it is put in place.
    public func writeObject(file: FileDescriptor, id: SHA256Digest) throws {
        let path = objectPath(id)
        if FileSystem.exists(path) { return }
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.copyAtomically(from: file, to: path, mode: 0o444, sha256: id)
    }

    /// A tree of this store, checked against its id. A large one keeps its chunk lists in its
    /// object file, read on demand, so checkout and sync of a large model hold no chunk list.
    public func readTree(_ id: SHA256Digest) throws -> TreeObject {
        let path = objectPath(id)
        guard let size = FileSystem.fileSize(path), size > UInt64(TreeObject.inMemoryLimit) else {
            return try TreeObject.decode(try readObject(id, limit: TreeObject.maxEncodedSize), source: path)
        }
        return try TreeObject.decode(file: try FileDescriptor.openForReading(path), id: id, source: path)
    }

    /// The version object `id`, hash-checked and decoded.
    public func readVersion(_ id: SHA256Digest) throws -> VersionObject {
        try VersionObject.decode(try readObject(id, limit: VersionObject.maxEncodedSize), source: objectPath(id))
    }

    // MARK: Refs

    /// refs/<name>: the directory of a model's refs.
    public func modelDirectory(_ name: ModelName) -> String { "\(refsDirectory)/\(name.value)" }

    /// The ref file naming `name@version`'s version id.
    public func versionRefPath(_ name: ModelName, _ version: SemVer) -> String {
        "\(modelDirectory(name))/@versions/\(version.description)"
    }

    /// The ref file naming the version that holds `stage` of `name`.
    public func stageRefPath(_ name: ModelName, _ stage: String) -> String {
        "\(modelDirectory(name))/@stages/\(stage)"
    }

    /// The version id a ref file holds: 64 lowercase hex digits and an optional newline, nothing
    /// else.
    public static func parseRefFile(_ bytes: [UInt8], source: String) throws -> SHA256Digest {
        var text = String(decoding: bytes, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        guard let id = SHA256Digest(hex: text), text == id.hex else {
            throw SLMError.damaged(path: source, problem: "ref does not hold a version id")
        }
        return id
    }

    /// The id in the ref file at `path`, nil when there is none; a ref that is there but unreadable
    /// or malformed is an error.
    public func readRef(at path: String) throws -> SHA256Digest? {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readFile(path, limit: 4096)
        } catch let e as SLMError {
            guard case .io(_, "open", ENOENT) = e.kind else { throw e }
            return nil
        }
        return try Store.parseRefFile(bytes, source: path)
    }

    /// Writes a ref file atomically (temporary file, fsync, rename).
    public func writeRef(at path: String, id: SHA256Digest) throws {
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(Array((id.hex + "\n").utf8), to: path)
    }

    /// Every model with at least one version, sorted by name.
    public func models() throws -> [ModelName] {
        var out: [ModelName] = []
        func walk(_ dir: String, _ prefix: String) throws {
            for entry in try FileSystem.listDirectory(dir) where FileSystem.isDirectory("\(dir)/\(entry)") {
                if entry == "@versions" {
                    if let name = ModelName(parsing: prefix) { out.append(name) }
                } else if !entry.hasPrefix("@") && !entry.hasPrefix(".") {
                    try walk("\(dir)/\(entry)", prefix.isEmpty ? entry : "\(prefix)/\(entry)")
                }
            }
        }
        if FileSystem.isDirectory(refsDirectory) { try walk(refsDirectory, "") }
        return out.sorted()
    }

    /// Paths of every ref file below refs/ (version and stage refs of every model), parsed or not.
    public func refFiles() throws -> [String] {
        var out: [String] = []
        func walk(_ dir: String) throws {
            for entry in try FileSystem.listDirectory(dir) where !entry.hasPrefix(".") {
                let path = "\(dir)/\(entry)"
                if FileSystem.isDirectory(path) { try walk(path) } else { out.append(path) }
            }
        }
        if FileSystem.isDirectory(refsDirectory) { try walk(refsDirectory) }
        return out
    }

    /// The versions of one model with their ids, in SemVer precedence order. Entries whose name
    /// is not a version are not listed (gc still honours them: see `refFiles`).
    public func versions(of name: ModelName) throws -> [(version: SemVer, id: SHA256Digest)] {
        let dir = "\(modelDirectory(name))/@versions"
        guard FileSystem.isDirectory(dir) else { return [] }
        var out: [(SemVer, SHA256Digest)] = []
        for entry in try FileSystem.listDirectory(dir) where !entry.hasPrefix(".") {
            guard let v = SemVer(parsing: entry), let id = try readRef(at: "\(dir)/\(entry)") else { continue }
            out.append((v, id))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    // MARK: Packs

    /// packs/<id>.pack.
    public func packPath(_ id: PackID) -> String { "\(packsDirectory)/\(id.hex).pack" }
    /// packs/<id>.idx: written after the pack, so a pack with an index is committed.
    public func packIndexPath(_ id: PackID) -> String { "\(packsDirectory)/\(id.hex).idx" }
    /// The multi-pack index covering most packs.
    public var multiPackIndexPath: String { "\(packsDirectory)/\(MultiPackFormat.fileName)" }

    /// Packs that are committed, i.e. whose index exists.
    public func packIDs() throws -> [PackID] {
        try FileSystem.listDirectory(packsDirectory).compactMap { name in
            guard name.hasSuffix(".idx") else { return nil }
            return PackID(hex: String(name.dropLast(4)))
        }
    }

    /// The index of pack `id`, decoded and checked.
    public func readPackIndex(_ id: PackID) throws -> PackIndex {
        let path = packIndexPath(id)
        return try PackIndex.decode(try FileSystem.readFile(path, limit: PackIndex.maxEncodedSize), source: path)
    }

    /// Where every committed chunk is: packs the multi-pack index covers are searched in it
    /// (a damaged one is passed over: pack indexes are the truth), the rest read into memory.
    /// With `skippingDamaged`, a pack whose index cannot be read is left out (verify reports it).
    public func loadChunkIndex(skippingDamaged: Bool = false) throws -> ChunkIndex {
        var index = ChunkIndex()
        let ids = try packIDs()
        let listed = Set(ids)
        // try?: the doc above; a damaged multi-pack index is passed over.
        if let multiPack = try? MultiPackIndex.open(multiPackIndexPath) { index.attach(multiPack, present: listed) }
        for id in ids where !index.covers(id) {
            do {
                index.add(pack: id, index: try readPackIndex(id))
            } catch where skippingDamaged && error is SLMError {}
        }
        // A long-lived store (the sync daemon, a gateway) lets go of packs another process's gc
        // removed: an open descriptor would keep their blocks on disk.
        packFiles.withLock { files in files = files.filter { listed.contains($0.key) } }
        return index
    }

    /// Closes the cached descriptor of a pack that is gone (once no reader still holds it).
    func forgetPackFile(_ id: PackID) {
        _ = packFiles.withLock { $0.removeValue(forKey: id) }
    }

    func packFile(_ id: PackID) throws -> FileDescriptor {
        try packFiles.withLock { files in
            if let f = files[id] { return f }
            let f = try FileDescriptor.openForReading(packPath(id))
            files[id] = f
            return f
        }
    }

    /// Reads, decodes and verifies one chunk into `out` (at least `rawLength` bytes). A delta
    /// record's bases are found in `index` (loaded when not given).
    public func readChunk(_ id: ChunkID, at loc: ChunkLocation, into out: UnsafeMutableRawBufferPointer, index: ChunkIndex? = nil,
                          cache: DecodedChunkCache? = nil) throws {
        let record = try readRecord(at: loc)
        let base = loc.codec == .delta ? baseReader(index: try index ?? loadChunkIndex(), for: id, cache: cache) : nil
        try ChunkVerifier.decodeRecord(record, expected: id, location: loc, into: out, what: "\(packPath(loc.pack)) chunk \(id.hex)", base: base)
    }

    /// A record's bytes as stored (header and payload), unchecked.
    package func readRecord(at loc: ChunkLocation) throws -> [UInt8] {
        try packFile(loc.pack).pread(count: PackFormat.recordHeaderSize + Int(loc.storedLength), at: loc.offset)
    }

    /// The header of a delta record (its bases, offset, full length), reading only the bytes it
    /// occupies, checked.
    public func deltaHeader(at loc: ChunkLocation) throws -> DeltaHeader {
        let prefix = min(Int(loc.storedLength), DeltaCodec.fixedHeaderSize + DeltaHeader.maxBases * DeltaCodec.baseEntrySize)
        let bytes = try packFile(loc.pack).pread(count: PackFormat.recordHeaderSize + prefix, at: loc.offset)
        return try ChunkVerifier.deltaHeader(bytes, rawLength: loc.rawLength, what: packPath(loc.pack))
    }

    /// The verified record (header and payload) of a chunk, for copying it to another pack
    /// without recompressing: decoded and hash-checked first, so damage is never propagated.
    public func readVerifiedRecord(_ id: ChunkID, at loc: ChunkLocation, index: ChunkIndex? = nil) throws -> [UInt8] {
        let record = try readRecord(at: loc)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(loc.rawLength), alignment: 16)
        defer { scratch.deallocate() }
        let base = loc.codec == .delta ? baseReader(index: try index ?? loadChunkIndex(), for: id) : nil
        try ChunkVerifier.decodeRecord(record, expected: id, location: loc, into: scratch, what: "\(packPath(loc.pack)) chunk \(id.hex)", base: base)
        return record
    }

    /// Reads the base bytes of a delta record of `chunk` from full records of this store (depth 1:
    /// a stored delta never needs another delta). Computing a *new* delta may read its base
    /// through a delta (`throughDeltas`): that costs one more read, and the record it produces
    /// names the base chunks, not how they were read. Consecutive chunks of a tensor share base
    /// chunks, so a caller working through them in order passes a `cache`.
    public func baseReader(index: ChunkIndex, for chunk: ChunkID, cache: DecodedChunkCache? = nil, throughDeltas: Bool = false) -> BaseReader {
        return { bases, offset, count, what in
            // Not zero-filled first: every byte is copied from a base, or the closure throws.
            var out = [UInt8](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
            var skip = Int(offset), filled = 0
            for b in bases where filled < count {
                let len = Int(b.rawLength)
                let take = min(len - skip, count - filled)
                let decoded: [UInt8]
                if let hit = cache?.get(b.id) {
                    decoded = hit
                } else {
                    guard let loc = throughDeltas ? index.location(of: b.id) : index.fullLocation(of: b.id) else {
                        let how = index.contains(b.id) ? "has no full record here (a delta's base must not be a delta)" : "is not stored here"
                        throw SLMError.damaged(path: what, problem: "base chunk \(b.id.hex) of delta chunk \(chunk.hex) \(how)")
                    }
                    guard loc.rawLength == b.rawLength else {
                        throw SLMError.damaged(path: what, problem: "base chunk \(b.id.hex) of delta chunk \(chunk.hex) is \(loc.rawLength) bytes, the delta says \(b.rawLength)")
                    }
                    // Not zero-filled first: readChunk writes every byte or throws.
                    let buf = try [UInt8](unsafeUninitializedCapacity: len) { bytes, initialized in
                        try self.readChunk(b.id, at: loc, into: UnsafeMutableRawBufferPointer(bytes), index: index)
                        initialized = len
                    }
                    cache?.put(b.id, buf)
                    decoded = buf
                }
                guard decoded.count == len else {
                    throw SLMError.damaged(path: what, problem: "base chunk \(b.id.hex) of delta chunk \(chunk.hex) is \(decoded.count) bytes, the delta says \(len)")
                }
                out.withUnsafeMutableBytes { o in
                    decoded.withUnsafeBytes { o.baseAddress!.advanced(by: filled).copyMemory(from: $0.baseAddress! + skip, byteCount: take) }
                }
                filled += take
                skip = 0
            }
            guard filled == count else { throw SLMError.damaged(path: what, problem: "base chunks of delta chunk \(chunk.hex) cover \(filled) of \(count) bytes") }
            return out
        }
    }

    // MARK: Working directories

    /// A private directory under tmp/ for one operation's unfinished files. Its lock tells other
    /// processes it is alive; directories whose lock is free were left by a crash and are removed.
    public func makeWorkingDirectory(_ purpose: String) throws -> WorkingDirectory {
        try WorkingDirectory(path: "\(tmpDirectory)/\(purpose)-\(FileSystem.randomHex(8))")
    }

    /// Housekeeping before a write: a tmp/ that is absent or cannot be listed holds nothing to
    /// remove now, and a directory whose lock cannot be taken is still in use.
    public func removeAbandonedWorkingDirectories() {
        let now = time(nil)
        for name in (try? FileSystem.listDirectory(tmpDirectory)) ?? [] {
            let dir = "\(tmpDirectory)/\(name)"
            var st = stat()
            guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            if name.hasPrefix(".new-") {
                // Still being set up, or abandoned during set-up long ago.
                if now - st.st_mtim.tv_sec > 3600 { FileSystem.removeTree(dir) }
                continue
            }
            if let probe = try? FileLock(tryExisting: dir + "/.lock", mode: .exclusive) {
                _ = probe
                FileSystem.removeTree(dir)
            }
        }
    }
}

/// The last few base chunks decoded (verified), for one thread working through delta records
/// in order. Behind a mutex only so it is checked Sendable: one thread uses a cache, so the lock
/// is never contended, and it costs nothing beside decoding a chunk.
public final class DecodedChunkCache: Sendable {
    private let entries = Mutex<[(ChunkID, [UInt8])]>([])
    private let capacity: Int

    /// A cache of the `capacity` most recently decoded chunks.
    public init(capacity: Int = 4) { self.capacity = capacity }

    func get(_ id: ChunkID) -> [UInt8]? { entries.withLock { e in e.first { $0.0 == id }?.1 } }

    func put(_ id: ChunkID, _ bytes: [UInt8]) {
        entries.withLock { e in
            if e.count >= capacity { e.removeFirst() }
            e.append((id, bytes))
        }
    }
}

/// A directory under tmp/ that one operation works in, locked while it lives so housekeeping leaves
/// it alone; removed when done.
public final class WorkingDirectory: Sendable {
    /// Its path.
    public let path: String
    private let lock: Mutex<FileLock?>

    /// The directory is set up under a hidden name and renamed into place with its lock already
    /// held, so a concurrent cleaner can never mistake it for an abandoned one.
    init(path: String) throws {
        self.path = path
        let staging = FileSystem.dirname(path) + "/.new-" + FileSystem.basename(path)
        try FileSystem.makeDirectories(staging)
        lock = Mutex(try FileLock(path: staging + "/.lock", mode: .exclusive))
        try FileSystem.rename(staging, path)
    }

    /// Removes the directory, then lets go of its lock (in that order, so no cleaner races us).
    public func remove() {
        lock.withLock { held in
            guard held != nil else { return }
            FileSystem.removeTree(path)
            held = nil
        }
    }

    deinit { remove() }
}

extension Store {
    /// Pack indexes downloaded from remotes, kept between pulls; gc empties it.
    public var remoteIndexCacheRoot: String { root + "/cache/pack-indexes" }

    /// Verified pack indexes of one remote. Kept apart per remote: another remote (or a forged
    /// answer from it) serving a different index under the same pack id cannot poison this one.
    public func remoteIndexCache(for location: String) -> String {
        "\(remoteIndexCacheRoot)/\(SHA256Hasher.hash(Array(location.utf8)).hex.prefix(16))"
    }
}
