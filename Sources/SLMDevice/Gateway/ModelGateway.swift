// The gateway an inference server links: ask for "intent-classifier in production" and get a
// directory of verified files; the active version is swapped with one pointer exchange when the
// stage moves, while requests still holding the old handle finish on the old files.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation
import Synchronization

/// One materialized version in use. While any handle to it is alive its directory is not
/// pruned (a shared lock on its lock file tells pruners to skip it).
public final class ModelHandle: Sendable {
    /// The model.
    public let name: String
    /// The version.
    public let version: String
    /// Its version id.
    public let versionID: SHA256Digest
    /// Absolute path of the directory holding the version's files.
    public let directory: String
    private let lock: FileLock

    init(name: String, version: String, versionID: SHA256Digest, directory: String) throws {
        self.name = name
        self.version = version
        self.versionID = versionID
        self.directory = directory
        lock = try FileLock(path: directory + "/" + InstallDirectory.lockName, mode: .shared)
        // The directory may have been pruned between resolving it and locking it.
        guard InstallDirectory(root: FileSystem.dirname(directory)).installedID(of: version) == versionID else {
            lock.unlock()
            throw SLMError.failed("\(name)@\(version) was removed while being opened; retry")
        }
    }

    /// The absolute path of `file` in the version.
    public func path(_ file: String) -> String { directory + "/" + file }

    deinit { lock.unlock() }
}

/// A gateway over installed or stored versions. Its shared state (active versions, splits, the
/// watcher flag, the callbacks) is one value behind one mutex; a callback is read under it and
/// called after it is released, so a callback may call back into the gateway.
public final class ModelGateway: Sendable {
    /// Where versions come from.
    public enum Source: Sendable {
        /// Versions come from a local store and are materialized under `cache/<model>/`.
        case store(Store, cache: String)
        /// Versions are installed by `pull --to` / `sync` under `root/<model>/` with a `current` link.
        case installed(root: String)
    }

    /// Where this gateway's versions come from.
    public let source: Source

    private struct State {
        var active: [String: (selector: String, handle: ModelHandle)] = [:]
        /// In-process A/B: a second version of a model that takes `share` of requests.
        var splits: [String: (selector: String, handle: ModelHandle, share: Double)] = [:]
        var watching = false
        var onWatchError: (@Sendable (String, Error) -> Void)?
        var onSwitch: (@Sendable (String, String?, String) -> Void)?
    }
    private let state = Mutex(State())

    /// Called when a watch round cannot resolve or switch a model (it keeps its version).
    public var onWatchError: (@Sendable (String, Error) -> Void)? {
        get { state.withLock { $0.onWatchError } }
        set { state.withLock { $0.onWatchError = newValue } }
    }
    /// Called after a swap with (model, old version, new version).
    public var onSwitch: (@Sendable (String, String?, String) -> Void)? {
        get { state.withLock { $0.onSwitch } }
        set { state.withLock { $0.onSwitch = newValue } }
    }

    /// A gateway over `source`.
    public init(source: Source) { self.source = source }

    deinit { stopWatching() }

    /// Materializes (if needed) and opens the version `selector` picks for `model`.
    public func resolve(_ model: String, _ selector: String) throws -> ModelHandle {
        let name = try ModelName(model)
        switch source {
        case let .store(store, cache):
            let r = try store.resolve(.selector(name, selector).normalized)
            let dir = InstallDirectory(root: "\(cache)/\(name.value)")
            // Versions still held by a handle are never pruned, whatever `keep` says.
            try dir.installAndActivate(store: store, tree: try store.readTree(r.object.tree), version: r.version.description,
                                       id: r.id, label: "\(r.name)@\(r.version)", keep: 0)
            return try ModelHandle(name: name.value, version: r.version.description, versionID: r.id,
                                   directory: FileSystem.absolutePath(dir.path(of: r.version.description)))
        case let .installed(root):
            let dir = InstallDirectory(root: "\(root)/\(name.value)")
            let version = selector == "current" ? dir.current() : selector
            guard let version, let id = dir.installedID(of: version) else {
                throw SLMError.notFound("\(name)@\(selector) is not installed under \(root)/\(name.value)")
            }
            return try ModelHandle(name: name.value, version: version, versionID: id,
                                   directory: FileSystem.absolutePath(dir.path(of: version)))
        }
    }

    /// The active version of `model`. The first call activates `defaultSelector`.
    public func current(_ model: String, defaultSelector: String = "production") throws -> ModelHandle {
        if let handle = state.withLock({ $0.active[model]?.handle }) { return handle }
        let selector = { if case .installed = source { return "current" } else { return defaultSelector } }()
        try switchTo(model, selector: selector)
        guard let handle = state.withLock({ $0.active[model]?.handle }) else {
            throw SLMError.failed("\(model) was deactivated while being activated; retry")
        }
        return handle
    }

    /// Routes `share` (0...1) of `model`'s requests to the version `selector` picks, with both
    /// versions loaded; `route` then answers with one or the other, never a half-switched state.
    public func split(_ model: String, to selector: String, share: Double) throws {
        guard (0...1).contains(share) else { throw SLMError.argument("split share must be between 0 and 1, not \(share)") }
        _ = try current(model)
        let handle = try resolve(model, selector)
        state.withLock { $0.splits[model] = (selector, handle, share) }
    }

    /// Ends a split: every request goes to the active version again.
    public func unsplit(_ model: String) {
        state.withLock { $0.splits[model] = nil }
    }

    /// The version to serve one request with: the split's version for its share of requests,
    /// else the active one. With a `requestKey` the choice is stable for that key (a user, a
    /// session); without one it is random.
    public func route(_ model: String, requestKey: String? = nil) throws -> ModelHandle {
        let main = try current(model)
        guard let split = state.withLock({ $0.splits[model] }) else { return main }
        let draw: Double
        if let requestKey {
            let d = SHA256Hasher.hash(Array("\(model)\u{0}\(requestKey)".utf8)).bytes
            draw = Double(d.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % 1_000_000) / 1_000_000
        } else {
            draw = Double.random(in: 0..<1)
        }
        return draw < split.share ? split.handle : main
    }

    /// Makes `selector`'s version the active one for `model`: one pointer swap. Handles given out
    /// before stay valid until released.
    public func switchTo(_ model: String, selector: String) throws {
        let handle = try resolve(model, selector)
        let (old, onSwitch) = state.withLock { s -> (String?, (@Sendable (String, String?, String) -> Void)?) in
            let old = s.active[model]?.handle.version
            s.active[model] = (selector, handle)
            return (old, s.onSwitch)
        }
        if old != handle.version { onSwitch?(model, old, handle.version) }
    }

    /// Re-resolves every active model's selector every `interval` seconds and swaps when the
    /// answer changes (a promotion, a rollback, a new `current` installed by sync).
    public func startWatching(interval: Double) {
        let started = state.withLock { s -> Bool in
            guard !s.watching else { return false }
            s.watching = true
            return true
        }
        guard started else { return }
        Thread { [weak self] in
            while let self, self.isWatching {
                self.poll()
                Thread.sleep(forTimeInterval: interval)
            }
        }.start()
    }

    /// Stops the watcher thread `startWatching` started (it ends after its current sleep).
    public func stopWatching() {
        state.withLock { $0.watching = false }
    }

    private var isWatching: Bool { state.withLock { $0.watching } }

    /// One watch round; public so callers can drive it from their own loop.
    public func poll() {
        let snapshot = state.withLock { $0.active.map { ($0.key, $0.value.selector, $0.value.handle.versionID) } }
        for (model, selector, id) in snapshot {
            do {
                guard try resolveID(model, selector) != id else { continue }
                try switchTo(model, selector: selector)
            } catch {
                // The active version stays; the caller hears why the swap did not happen.
                let onWatchError = state.withLock { $0.onWatchError }
                onWatchError?(model, error)
            }
        }
    }

    private func resolveID(_ model: String, _ selector: String) throws -> SHA256Digest {
        let name = try ModelName(model)
        switch source {
        case let .store(store, _):
            return try store.resolve(VersionRef.selector(name, selector).normalized).id
        case let .installed(root):
            let dir = InstallDirectory(root: "\(root)/\(name.value)")
            guard let v = selector == "current" ? dir.current() : selector, let id = dir.installedID(of: v) else {
                throw SLMError.notFound("\(model) not installed")
            }
            return id
        }
    }
}

extension VersionRef {
    /// `.selector` holding an exact version becomes `.exact`.
    var normalized: VersionRef {
        if case let .selector(n, s) = self, let v = SemVer(parsing: s) { return .exact(n, v) }
        return self
    }
}
