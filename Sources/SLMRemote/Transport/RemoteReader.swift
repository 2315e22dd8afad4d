// Reading a remote store's metadata: config, manifest, refs, objects and pack indexes, each
// bounded in size and checked against its hash before it is believed.

import SLMFormats
import SLMLocalStore
import Foundation
import Synchronization

/// Reads a remote store's metadata, checking each file (size bounds, hashes, pack index checksums
/// the manifest lists) and caching verified pack indexes.
public final class RemoteReader: Sendable {
    /// The remote read from.
    public let remote: any ReadableBackend
    /// Where verified pack indexes are cached (they are immutable, so valid forever).
    let cacheDirectory: String?
    private let received = Mutex<UInt64>(0)
    /// Index checksums from the last manifest read: which index is the publisher's.
    private let indexChecksums = Mutex<[PackID: SHA256Digest]>([:])
    /// Cache files checked whole by this reader: planning reads one again for each window, and
    /// checking it once per pull is enough (the cursor still checks its trailer every time).
    private let checkedCacheFiles = Mutex<Set<String>>([])
    /// Entries files read through this reader (named by their hash, so never stale).
    private let entriesCache = ManifestEntriesCache()
    private let topManifest = Mutex<Manifest?>(nil)
    /// Metadata bytes read so far (config, manifest, refs, objects, pack indexes).
    public var metadataBytes: UInt64 { received.withLock { $0 } }

    /// The signed release a device accepted from this remote: when set, only what it lists exists.
    public let release: SignedRelease?

    /// A reader of `remote`, caching pack indexes under `cacheDirectory` (nil: none); with
    /// `release`, the manifest is restricted to what the signed release lists.
    public init(remote: any ReadableBackend, cacheDirectory: String?, release: SignedRelease? = nil) {
        self.remote = remote
        self.cacheDirectory = cacheDirectory
        self.release = release
    }

    private func get(_ path: String, limit: Int) throws -> [UInt8]? {
        let b = try remote.read(path, limit: limit)
        received.withLock { $0 += UInt64(b?.count ?? 0) }
        return b
    }

    private func where_(_ path: String) -> String { "\(remote.location)/\(path)" }

    /// The remote's config; a remote without one is not a store.
    public func config() throws -> StoreConfig {
        guard let bytes = try get("config", limit: 1 << 20) else {
            throw SLMError.notAStore(path: where_("config"), problem: "not a slmstore store (no config)")
        }
        return try StoreConfig.decode(bytes, source: where_("config"))
    }

    /// The manifest with the versions of `models` loaded (of every model when nil): a format 2
    /// manifest keeps each model's versions in a file of its own, read only when needed.
    /// manifest.json is read once per reader (a reader lives for one pull or push), so every
    /// step of a pull sees the same listing and a large one is not downloaded twice.
    public func manifest(models: Set<String>?) throws -> Manifest {
        var manifest: Manifest
        if let read = topManifest.withLock({ $0 }) {
            manifest = read
        } else {
            guard let bytes = try get("manifest.json", limit: Manifest.maxEncodedSize) else {
                throw SLMError.remote(url: where_("manifest.json"), problem: "no manifest.json").remedied(by: .publish)
            }
            manifest = try Manifest.decode(bytes, source: where_("manifest.json"))
            indexChecksums.withLock { $0 = manifest.packIndexChecksums }
            topManifest.withLock { $0 = manifest }
        }
        try manifest.loadVersions(of: models, location: remote.location, cache: entriesCache, read: get)
        return release?.restrict(manifest) ?? manifest
    }

    /// The id `name@version`'s ref names on the remote, nil when it has none.
    public func versionRef(_ name: ModelName, _ version: SemVer) throws -> SHA256Digest? {
        let path = RemoteLayout.versionRefPath(name, version)
        guard let bytes = try get(path, limit: 4096) else { return nil }
        let id = try Store.parseRefFile(bytes, source: where_(path))
        if let release, !release.lists(name, version, id) {
            throw SLMError.untrusted(source: where_(path), problem: "\(name)@\(version) (\(id.hex.prefix(12))) is not in the signed release (serial \(release.serial))")
        }
        return id
    }

    /// An object's exact bytes, checked against its id: stored as they are, never re-encoded.
    package func objectBytes(_ id: SHA256Digest, limit: Int) throws -> [UInt8] {
        let hex = id.hex
        let path = RemoteLayout.objectPath(id)
        guard let bytes = try get(path, limit: limit) else {
            throw SLMError.remote(url: where_(path), problem: "object \(hex) is missing on the remote")
        }
        guard SHA256Hasher.hash(bytes) == id else {
            throw SLMError.remote(url: where_(path), problem: "object content does not hash to its id \(hex)")
        }
        return bytes
    }

    /// An object streamed into a new file at `path` (not fsynced: the caller decides whether it
    /// is kept), checked against its id, and opened for reading: large objects (trees of large
    /// models) are never held whole.
    package func objectFile(_ id: SHA256Digest, limit: Int, to path: String) throws -> FileDescriptor {
        let hex = id.hex
        let remotePath = RemoteLayout.objectPath(id)
        let out = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o444)
        let hasher = SHA256Hasher()
        var size = 0
        let found = try remote.readStream(remotePath, limit: limit) { piece in
            size += piece.count
            guard size <= limit else { throw SLMError.remote(url: where_(remotePath), problem: "object is more than the \(limit) bytes allowed") }
            hasher.update(piece)
            try out.write(piece)
        }
        received.withLock { $0 += UInt64(size) }
        guard found else { throw SLMError.remote(url: where_(remotePath), problem: "object \(hex) is missing on the remote") }
        guard hasher.finish() == id else {
            throw SLMError.remote(url: where_(remotePath), problem: "object content does not hash to its id \(hex)")
        }
        return try FileDescriptor.openForReading(path)
    }

    /// The version object `id`, hash-checked and decoded.
    public func version(_ id: SHA256Digest) throws -> VersionObject {
        try VersionObject.decode(try objectBytes(id, limit: VersionObject.maxEncodedSize), source: where_("objects/\(id.hex)"))
    }

    /// The tree object `id`, hash-checked and decoded.
    public func tree(_ id: SHA256Digest) throws -> TreeObject {
        try TreeObject.decode(try objectBytes(id, limit: TreeObject.maxEncodedSize), source: where_("objects/\(id.hex)"))
    }

    /// Cached under its checksum when the manifest names one: an index cached from a forged
    /// answer is never taken for the one the publisher's manifest lists.
    private func cachePath(_ id: PackID) -> (path: String?, expected: SHA256Digest?) {
        let expected = indexChecksums.withLock { $0[id] }
        return (cacheDirectory.map { "\($0)/\(Self.cacheFileName(id, checksum: expected))" }, expected)
    }

    /// The name a pack's index is cached under in a remote's cache directory (push, which
    /// uploads indexes, caches them under the same name).
    static func cacheFileName(_ id: PackID, checksum: SHA256Digest?) -> String {
        checksum.map { "\(id.hex)-\($0.hex.prefix(16)).idx" } ?? "\(id.hex).idx"
    }

    /// The index of pack `id`: from the cache when intact, else downloaded, checked against the
    /// checksum the manifest lists, and cached.
    public func packIndex(_ id: PackID) throws -> PackIndex {
        let (cached, expected) = cachePath(id)
        // A cache: an unreadable or damaged entry only costs a download, and a failed write
        // only a later one, so neither stops the pull.
        if let cached, let bytes = FileSystem.readCacheFile(cached, limit: PackIndex.maxEncodedSize),
           let index = try? PackIndex.decode(bytes, source: cached), expected == nil || index.checksum == expected {
            return index
        }
        let path = RemoteLayout.packIndexPath(id)
        guard let bytes = try get(path, limit: PackIndex.maxEncodedSize) else {
            throw SLMError.remote(url: where_(path), problem: "pack index listed in the manifest is missing")
        }
        let index = try PackIndex.decode(bytes, source: where_(path))
        if let expected, index.checksum != expected {
            throw SLMError.remote(url: where_(path), problem: "pack index checksum \(index.checksum?.hex.prefix(16) ?? "?") is not the \(expected.hex.prefix(16)) the manifest lists")
        }
        if let cached {
            // Checked just now (decoded, and against the manifest): streaming it needs no second check.
            if FileSystem.writeCacheFile(bytes, to: cached) { checkedCacheFiles.withLock { _ = $0.insert(cached) } }
        }
        return index
    }

    private struct CacheWriteFailed: Error {}

    /// Streams a pack index into the cache file and checks it there entry by entry (structure,
    /// order, trailer, the manifest's checksum) before it takes the cache name, so an index is
    /// never held whole: one of small chunks in a large pack is tens of MiB. False when the
    /// cache cannot be written (the caller decodes the index in memory instead).
    private func fetchIndex(_ id: PackID, into cached: String, expected: SHA256Digest?) throws -> Bool {
        let path = RemoteLayout.packIndexPath(id)
        let tmp = "\(cached).tmp-\(FileSystem.randomHex(6))"
        let out: FileDescriptor
        do {
            try FileSystem.makeDirectories(FileSystem.dirname(cached))
            out = try FileDescriptor(path: tmp, flags: O_WRONLY | O_CREAT | O_EXCL)
        } catch {
            return false
        }
        defer { FileSystem.remove(tmp) }
        var size = 0
        let found: Bool
        do {
            found = try remote.readStream(path, limit: PackIndex.maxEncodedSize) { piece in
                size += piece.count
                do { try out.write(piece) } catch { throw CacheWriteFailed() }
            }
        } catch is CacheWriteFailed {
            return false
        }
        received.withLock { $0 += UInt64(size) }
        guard found else { throw SLMError.remote(url: where_(path), problem: "pack index listed in the manifest is missing") }
        let checksum: SHA256Digest
        do {
            checksum = try PackIndexCursor.check(tmp, bufferBytes: 64 << 10)
        } catch let e as SLMError {
            guard case let .damaged(_, problem) = e.kind else { throw e }
            throw SLMError.damaged(path: where_(path), problem: problem)
        }
        if let expected, checksum != expected {
            throw SLMError.remote(url: where_(path), problem: "pack index checksum \(checksum.hex.prefix(16)) is not the \(expected.hex.prefix(16)) the manifest lists")
        }
        do { try FileSystem.rename(tmp, cached) } catch { return false }
        checkedCacheFiles.withLock { _ = $0.insert(cached) }
        return true
    }

    /// Hands `body` every entry of a pack index in id order, read from the cache file through a
    /// small buffer once the whole file has been checked (structure, trailer, the manifest's
    /// checksum): a pull looks through an index per planning window, and an index of small
    /// chunks in a large pack holds a hundred thousand entries, which decoded each time cost
    /// more memory than the rest of the pull. One not cached yet is streamed into the cache.
    /// Without a usable cache the index is decoded.
    public func forEachIndexEntry(_ id: PackID, _ body: (PackIndexEntry) throws -> Void) throws {
        let (cached, expected) = cachePath(id)
        func intact(_ path: String) -> Bool {
            if checkedCacheFiles.withLock({ $0.contains(path) }) { return true }
            // A cache file that fails its check is fetched again, which is what false leads to.
            guard let checksum = try? PackIndexCursor.check(path, bufferBytes: 64 << 10), expected == nil || checksum == expected else { return false }
            checkedCacheFiles.withLock { _ = $0.insert(path) }
            return true
        }
        guard let cached, try intact(cached) || fetchIndex(id, into: cached, expected: expected) else {
            for e in try packIndex(id).entries { try body(e) }
            return
        }
        let cursor = try PackIndexCursor(path: cached, bufferBytes: 64 << 10)
        while try cursor.advance() { try body(cursor.current) }
    }
}
