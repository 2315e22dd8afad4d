// An installed-model directory on a device: DIR/<version>/ holds each materialized version and
// DIR/current is a symlink flipped with one rename, so a reader sees the old version or the
// new one, never a mix. Versions in use (locked by a reader) are never pruned.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation

/// An install directory on a device: DIR/<version>/ per installed version and DIR/current, a
/// symlink flipped atomically.
public final class InstallDirectory: Sendable {
    /// DIR.
    public let root: String
    /// The file in a version's directory naming its version id: written last, so its presence means
    /// complete.
    public static let markerName = ".slmstore-version"
    /// The file in a version's directory a reader locks (shared) while it uses the version; prune
    /// skips locked versions.
    public static let lockName = ".slmstore-lock"
    static let historyName = ".slmstore-history"

    /// The install directory at `root` (created on first install).
    public init(root: String) { self.root = root }

    /// The directory of model `name` under an install root holding one directory per model
    /// (`sync --to ROOT`). A model name comes from a remote (a dependency), so it must not
    /// address a version directory or `current` of another model's directory, nor lie inside one.
    public static func forModel(_ name: ModelName, under installRoot: String) throws -> InstallDirectory {
        let segments = name.value.split(separator: "/").map(String.init)
        for (i, segment) in segments.enumerated() where i > 0 {
            if segment == "current" || SemVer(parsing: segment) != nil {
                throw SLMError.remote(url: name.value, problem: "model name \"\(name)\" would install into another model's directory (its segment \"\(segment)\" names a version or `current`); refused")
            }
            let ancestor = InstallDirectory(root: installRoot + "/" + segments[..<i].joined(separator: "/"))
            if ancestor.current() != nil || FileSystem.exists(ancestor.root + "/" + historyName) {
                throw SLMError.remote(url: name.value, problem: "model name \"\(name)\" lies inside the install directory of model \"\(segments[..<i].joined(separator: "/"))\"; refused")
            }
        }
        return InstallDirectory(root: installRoot + "/" + name.value)
    }

    /// DIR/current.
    public var currentLink: String { root + "/current" }

    /// DIR/<version>.
    public func path(of version: String) -> String { "\(root)/\(version)" }

    /// The version `current` points at, if any.
    public func current() -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { readlink(currentLink, $0, p.count - 1) }
        }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    /// The version id recorded in an installed version directory, if it is complete.
    /// A marker that is absent or does not parse both mean an incomplete install.
    public func installedID(of version: String) -> SHA256Digest? {
        guard let bytes = FileSystem.readCacheFile("\(path(of: version))/\(Self.markerName)", limit: 4096) else { return nil }
        return try? Store.parseRefFile(bytes, source: version)
    }

    /// Leftovers of interrupted installs.
    /// A root that cannot be listed has nothing to remove now.
    public func removeIncomplete() {
        for name in (try? FileSystem.listDirectory(root)) ?? [] where name.hasPrefix(".incoming-") || name.hasPrefix(".current-") {
            FileSystem.removeTree("\(root)/\(name)")
        }
    }

    /// Materializes `tree` as DIR/<version> unless it is already there, verified and complete.
    /// Returns true if files were written.
    @discardableResult
    public func install(store: Store, tree: TreeObject, version: String, id: SHA256Digest, label: String,
                        batchBytes: Int = Store.checkoutBatchBytes,
                        progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> Bool {
        try FileSystem.makeDirectories(root)
        removeIncomplete()
        if installedID(of: version) == id { return false }
        try DiskSpace.require(tree.files.reduce(UInt64(0)) { $0 + $1.size }, at: root, for: "installing \(label)")
        let incoming = "\(root)/.incoming-\(version)-\(FileSystem.randomHex(4))"
        do {
            _ = try store.checkout(tree: tree, versionLabel: label, to: incoming, force: false, batchBytes: batchBytes, progress: progress)
            try FileSystem.writeAtomically(Array((id.hex + "\n").utf8), to: "\(incoming)/\(Self.markerName)")
            let final = path(of: version)
            if FileSystem.exists(final) {
                // A directory without a valid marker is an older, incomplete or foreign copy.
                let aside = "\(root)/.incoming-old-\(FileSystem.randomHex(4))"
                try FileSystem.rename(final, aside)
                FileSystem.removeTree(aside)
            }
            try FileSystem.rename(incoming, final)
            try FileSystem.syncDirectory(root)
        } catch {
            FileSystem.removeTree(incoming)
            throw error
        }
        return true
    }

    /// The one way a version goes live: install it (unless already there), flip `current` to
    /// it, then prune to `keep` older versions. Returns true if files were written.
    @discardableResult
    public func installAndActivate(store: Store, tree: TreeObject, version: String, id: SHA256Digest, label: String, keep: Int,
                                   batchBytes: Int = Store.checkoutBatchBytes,
                                   progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> Bool {
        let wrote = try install(store: store, tree: tree, version: version, id: id, label: label, batchBytes: batchBytes, progress: progress)
        try switchCurrent(to: version)
        prune(keep: keep)
        return wrote
    }

    /// Points `current` at `version` with one atomic rename.
    public func switchCurrent(to version: String) throws {
        guard installedID(of: version) != nil else {
            throw SLMError.failed("\(path(of: version)) is not a complete installed version")
        }
        let tmp = "\(root)/.current-\(FileSystem.randomHex(4))"
        guard symlink(version, tmp) == 0 else { throw SLMError.io(path: tmp, operation: "symlink", errno: errno) }
        do { try FileSystem.rename(tmp, currentLink) } catch { FileSystem.remove(tmp); throw error }
        try FileSystem.syncDirectory(root)
        var history = installHistory().filter { $0 != version }
        history.append(version)
        try FileSystem.writeAtomically(Array(JSONValue.array(history.map { .string($0) }).canonicalString().utf8), to: "\(root)/\(Self.historyName)")
    }

    /// The first entry of the directory that slmstore did not put there (nil when it is absent,
    /// empty, holds only installed versions and slmstore's own files, or already has a version
    /// made current): an install directory is slmstore's, and a pull into someone's folder would
    /// mix the two.
    public func foreignEntry() -> String? {
        // Once slmstore installed here (told to, beside other files), the directory is its own.
        if current() != nil || FileSystem.exists("\(root)/\(Self.historyName)") { return nil }
        for name in ((try? FileSystem.listDirectory(root)) ?? []).sorted() {
            if name == "current" || name.hasPrefix(".slmstore") || name.hasPrefix(".incoming-") || name.hasPrefix(".current-") { continue }
            if installedID(of: name) != nil { continue }
            return name
        }
        return nil
    }

    /// The last `pull --to` into this directory (`.slmstore-pulled.json`), if it can be read.
    public func lastPull() -> PulledRecord? {
        guard let v = JSONValue.readCacheDocument("\(root)/\(PulledRecord.fileName)", limit: 64 << 10),
              let model = v["model"]?.stringValue, let version = v["version"]?.stringValue,
              let remote = v["remote"]?.stringValue, let time = v["time"]?.stringValue else { return nil }
        return PulledRecord(model: model, version: version, remote: remote, time: time)
    }

    /// Records a pull for `status`; a failure to write it costs only the status line.
    func recordPull(_ r: PulledRecord) {
        let o: JSONValue = .object(["format": .int(1), "model": .string(r.model), "version": .string(r.version),
                                    "remote": .string(r.remote), "time": .string(r.time)])
        try? FileSystem.writeAtomically(o.canonicalBytes() + [0x0a], to: "\(root)/\(PulledRecord.fileName)")
    }

    /// Removes `current`, for a model whose only version was rejected: nothing runs rather than
    /// the version that failed.
    public func clearCurrent() throws {
        guard unlink(currentLink) == 0 || errno == ENOENT else { throw SLMError.io(path: currentLink, operation: "unlink", errno: errno) }
        try FileSystem.syncDirectory(root)
    }

    /// Versions in the order they became current, oldest first; empty when the history is
    /// absent or unreadable (it only orders pruning: the oldest go first).
    public func installHistory() -> [String] {
        guard let a = JSONValue.readCacheDocument("\(root)/\(Self.historyName)", limit: 1 << 20)?.arrayValue else { return [] }
        return a.compactMap(\.stringValue)
    }

    /// Installed versions (complete ones), by name; none when the root is absent.
    public func installedVersions() -> [String] {
        ((try? FileSystem.listDirectory(root)) ?? []).filter { !$0.hasPrefix(".") && $0 != "current" && installedID(of: $0) != nil }
    }

    /// Removes installed versions beyond the current one and the `keep` most recent others.
    /// A version whose lock a reader holds is skipped. Returns what was removed.
    @discardableResult
    public func prune(keep: Int) -> [String] {
        let current = self.current()
        let history = installHistory()
        var keepSet = Set(history.filter { $0 != current }.suffix(max(0, keep)))
        if let current { keepSet.insert(current) }
        var removed: [String] = []
        for v in installedVersions() where !keepSet.contains(v) {
            let lockPath = "\(path(of: v))/\(Self.lockName)"
            // A version a reader holds (or whose lock cannot be taken) is left for a later prune.
            guard let lock = try? FileLock(tryPath: lockPath, mode: .exclusive) else { continue }
            let aside = "\(root)/.incoming-prune-\(FileSystem.randomHex(4))"
            do {
                try FileSystem.rename(path(of: v), aside)
                FileSystem.removeTree(aside)
                removed.append(v)
            } catch {
                lock.unlock()
                continue  // left in place, still complete
            }
            lock.unlock()
        }
        return removed
    }
}

/// What the last `pull --to` into an install directory brought, for `status`.
public struct PulledRecord: Sendable, Equatable {
    static let fileName = ".slmstore-pulled.json"
    /// The model pulled.
    public var model: String
    /// The version installed.
    public var version: String
    /// The remote, without credentials.
    public var remote: String
    /// When (RFC 3339 UTC).
    public var time: String
}
