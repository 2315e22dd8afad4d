// `sync`: keep a device's installed models on the versions a remote's stages (or ranges) point
// to. Each round polls manifest.json with a conditional GET, pulls only what changed, flips
// `<to>/<model>/current`, and never touches the installed version when anything fails.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation
import Synchronization

/// What a sync daemon follows and how: remote, install directory, models, timing, limits, checks
/// and hooks (the options of `slmstore sync`).
public struct SyncOptions: Sendable {
    /// The remote, as a user writes it (directory, http(s) URL or s3://).
    public var remote: String
    /// Where models are installed: <installRoot>/<model>/<version>, with `current`.
    public var installRoot: String
    /// (model, selector) pairs to follow, e.g. ("intent-classifier", "production").
    public var follow: [(ModelName, String)]
    /// Seconds between rounds.
    public var interval: Double = 30
    /// Earlier versions kept installed beside the current one.
    public var keep = 2
    /// A command run after an install (SLMSTORE_MODEL, SLMSTORE_OLD_VERSION,
    /// SLMSTORE_NEW_VERSION and SLMSTORE_INSTALL_DIR in its environment).
    public var onUpdate: String?
    /// Average download rate limit in bytes per second (0: none).
    public var maxBytesPerSecond: Double = 0
    /// The longest wait between rounds after failures, in seconds.
    public var maxBackoff: Double = 300
    /// Log lines as JSON objects instead of text.
    public var jsonLogs = false
    /// The device store's directory (default: <installRoot>/.slmstore).
    public var storePath: String?
    /// For s3:// remotes: an S3-compatible endpoint.
    public var endpoint: String?
    /// Which rollout slices this device falls in; generated once into the install root if nil.
    public var deviceID: String?
    /// Run after every switch; a failure or a timeout switches back and rejects the version.
    public var healthCheck: String?
    /// Seconds the health check may take before it counts as failed.
    public var healthTimeout: Double = 60
    /// Bounds the memory a pull uses for buffers (0: the defaults).
    public var memoryBudget: UInt64 = 0
    /// Download delta records against versions already held (off: full records only).
    public var useDeltas = true
    /// Public keys whose signed release metadata the device requires (--trust).
    public var trustedKeys: [Ed25519PublicKey] = []
    /// Refuse versions whose files add up to more than this (0: no limit).
    public var maxInstallSize: UInt64 = 0
    /// Refuse versions whose new data is more than this many times their download (0: no limit).
    public var maxExpansion: UInt64 = PullOptions.defaultMaxExpansion
    /// Where an http(s) remote's credentials come from.
    public var credentials = HTTPCredentials.Sources()
    /// A private CA and a client certificate for the remote (mutual TLS).
    public var tls = Remotes.TLSFiles()
    /// Send a device report after each round (DeviceReport): to `reportURL` by PUT when given,
    /// else into the remote's reports/ when this device may write there (a directory, S3).
    public var report = true
    /// Rounds start only inside this daily window (local time); nil: any time.
    public var window: DownloadWindow?
    /// Rounds bring new versions into the device store and stop there; a later round without it
    /// installs them with nothing left to download (download separated from activation).
    public var downloadOnly = false
    /// Where reports are PUT (nil: the remote's reports/ when it is writable).
    public var reportURL: String?

    /// Options to follow `follow` from `remote` into `installRoot`, with the defaults.
    public init(remote: String, installRoot: String, follow: [(ModelName, String)]) {
        self.remote = remote
        self.installRoot = installRoot
        self.follow = follow
    }
}

/// What `status` shows; persisted as `<to>/.slmstore-sync.json`.
public struct SyncState: Sendable {
    /// One followed model's standing.
    public struct Model: Sendable {
        /// The version installed and current.
        public var installed: String?
        /// Its version id.
        public var installedID: String?
        /// When it became current.
        public var since: String?
        /// The version the remote offers this device.
        public var remoteVersion: String?
        /// Versions a health check rejected.
        public var rejected: [String] = []
    }

    /// The remote followed.
    public var remote = ""
    /// The daemon's process id.
    public var pid: Int32 = 0
    /// Rounds run.
    public var rounds = 0
    /// When the last round ran.
    public var lastRound: String?
    /// When a round last succeeded.
    public var lastSuccess: String?
    /// Failed rounds since the last success.
    public var consecutiveFailures = 0
    /// The last failure's message.
    public var lastError: String?
    /// The manifest's validator from the last read (for a conditional read).
    public var manifestValidator: String?
    /// The followed models, by name.
    public var models: [String: Model] = [:]
    /// Rounds that failed.
    public var faults = 0
    /// Returns to success after failed rounds.
    public var recoveries = 0

    var json: JSONValue {
        .object([
            "remote": .string(remote), "pid": .int(pid), "rounds": .int(rounds),
            "last_round": lastRound.map { .string($0) } ?? .null, "last_success": lastSuccess.map { .string($0) } ?? .null,
            "consecutive_failures": .int(consecutiveFailures), "last_error": lastError.map { .string($0) } ?? .null,
            "manifest_validator": manifestValidator.map { .string($0) } ?? .null,
            "faults": .int(faults), "recoveries": .int(recoveries),
            "models": .object(models.mapValues { m in
                .object(["installed": m.installed.map { .string($0) } ?? .null, "installed_id": m.installedID.map { .string($0) } ?? .null,
                         "since": m.since.map { .string($0) } ?? .null, "remote_version": m.remoteVersion.map { .string($0) } ?? .null,
                         "rejected": .array(m.rejected.map { .string($0) })])
            }),
        ])
    }

    /// The saved state, or a fresh one when there is none or it cannot be read: it is status for
    /// people, never the source of what is installed (that is the install directory itself).
    public static func load(_ root: String) -> SyncState {
        var s = SyncState()
        // The doc above: absent and unreadable both start from a fresh state.
        guard let v = JSONValue.readCacheDocument(root + "/" + SyncDaemon.stateName, limit: 16 << 20) else { return s }
        s.remote = v["remote"]?.stringValue ?? ""
        s.pid = Int32(v["pid"]?.int64Value ?? 0)
        s.rounds = Int(v["rounds"]?.int64Value ?? 0)
        s.lastRound = v["last_round"]?.stringValue
        s.lastSuccess = v["last_success"]?.stringValue
        s.consecutiveFailures = Int(v["consecutive_failures"]?.int64Value ?? 0)
        s.lastError = v["last_error"]?.stringValue
        s.manifestValidator = v["manifest_validator"]?.stringValue
        s.faults = Int(v["faults"]?.int64Value ?? 0)
        s.recoveries = Int(v["recoveries"]?.int64Value ?? 0)
        for (k, m) in v["models"]?.objectValue ?? [:] {
            s.models[k] = Model(installed: m["installed"]?.stringValue, installedID: m["installed_id"]?.stringValue,
                                since: m["since"]?.stringValue, remoteVersion: m["remote_version"]?.stringValue,
                                rejected: (m["rejected"]?.arrayValue ?? []).compactMap(\.stringValue))
        }
        return s
    }

    func save(_ root: String) throws {
        try FileSystem.writeAtomically(Array(json.prettyString().utf8) + [0x0a], to: root + "/" + SyncDaemon.stateName)
    }
}

/// A stop request, readable from any thread (a signal handler sets it; the round checks it).
public final class StopFlag: Sendable {
    private let flag = Mutex(false)
    /// Not set.
    public init() {}
    /// Asks for a stop.
    public func set() { flag.withLock { $0 = true } }
    /// Whether a stop was asked for.
    public var isSet: Bool { flag.withLock { $0 } }
}

/// The device side: polls a remote, installs what it selects for each followed model (health
/// check, rollback, hooks, reports), and prunes. Not Sendable: its state belongs to the thread
/// that calls `run` or `round`; other threads only reach `stop`.
public final class SyncDaemon {
    /// The state file under the install root.
    public static let stateName = ".slmstore-sync.json"
    /// The lock file under the install root: one daemon per directory.
    public static let lockName = ".slmstore-sync.lock"
    static let manifestCacheName = ".slmstore-sync-manifest.json"
    private let entriesCache = ManifestEntriesCache()

    let options: SyncOptions
    let store: Store
    let remote: any ReadableBackend
    /// This device's id, for rollout slices.
    public let deviceID: String
    /// Signs this device's reports (its key, read once; the counter file per report).
    private let reportSigner: ReportSigner
    private var lock: FileLock?
    private var state: SyncState
    /// Set to stop after the current step.
    public let stop = StopFlag()
    /// Set when a round failed in a way no retry can fix (a format this build cannot read):
    /// `run` returns, and the caller reports it.
    public private(set) var fatalError: SLMError?
    /// Where log lines go (stdout by default).
    public var emit: @Sendable (String) -> Void = { line in
        FileHandle.standardOutput.write((line + "\n").data(using: .utf8)!)
    }

    /// Opens the remote and the device store and takes the install root's lock; refuses settings
    /// that do not fit (a health check with nothing kept to return to).
    public init(options: SyncOptions) throws {
        self.options = options
        try FileSystem.makeDirectories(options.installRoot)
        let lockPath = options.installRoot + "/" + Self.lockName
        guard let l = try FileLock(tryPath: lockPath, mode: .exclusive) else {
            let other = SyncState.load(options.installRoot).pid
            throw SLMError.conflict("another slmstore sync is already running for \(options.installRoot)\(other > 0 ? " (pid \(other))" : "")")
        }
        lock = l
        store = try Store.create(at: options.storePath ?? options.installRoot + "/.slmstore")
        var remoteOptions = Remotes.Options()
        remoteOptions.maxBytesPerSecond = options.maxBytesPerSecond
        remoteOptions.endpoint = options.endpoint
        remoteOptions.credentials = options.credentials
        remoteOptions.tls = options.tls
        let stop = self.stop
        remoteOptions.isCancelled = { stop.isSet }
        remote = try Remotes.open(options.remote, options: remoteOptions)
        if options.healthCheck != nil && options.keep < 1 {
            throw SLMError.invalidSetting(.healthCheck, problem: "needs at least one earlier version kept, to have one to return to")
        }
        deviceID = try DeviceIdentity.resolve(root: options.installRoot, explicit: options.deviceID)
        reportSigner = try ReportSigner(root: options.installRoot)
        state = SyncState.load(options.installRoot)
        state.remote = remote.location
        state.pid = getpid()
        for (name, _) in options.follow {
            let dir = InstallDirectory(root: "\(options.installRoot)/\(name.value)")
            dir.removeIncomplete()
            // A check that never gave its verdict (the daemon was killed): return to the version
            // that passed; the next round tries again.
            if let pending = try PendingCheck.load(dir) {
                if let previous = pending.previous, dir.installedID(of: previous) != nil {
                    if dir.current() != previous { try dir.switchCurrent(to: previous) }
                } else if pending.previous == nil {
                    // The first version on this device never passed: nothing runs until it does.
                    try dir.clearCurrent()
                }
                try PendingCheck.clear(dir)
                pendingRecovered.append("\(name)@\(pending.version)")
            }
        }
        store.removeAbandonedWorkingDirectories()
    }

    /// Asks the daemon to stop after the current step (what was verified stays).
    public func requestStop() { stop.set() }

    /// Whether a stop was asked for.
    public var isStopping: Bool { stop.isSet }

    func log(_ event: String, _ message: String, _ fields: [String: JSONValue] = [:]) {
        let time = Timestamp.now()
        if options.jsonLogs {
            var o = fields
            o["time"] = .string(time)
            o["event"] = .string(event)
            o["message"] = .string(message)
            emit(JSONValue.object(o).canonicalString())
        } else {
            emit("\(time) \(event): \(message)")
        }
    }

    private var pendingRecovered: [String] = []
    /// The model the round is working on (a failure is reported against it) and what each
    /// model downloaded this round.
    private var roundModel: String?
    private var roundBytes: [String: UInt64] = [:]
    /// The signed release this round accepted (nil when the device does not check releases).
    private var roundRelease: SignedRelease?

    /// Runs rounds until stopped (or once). Returns true if the last round succeeded.
    @discardableResult
    public func run(once: Bool) -> Bool {
        log("start", "following \(options.follow.map { "\($0.0)@\($0.1)" }.joined(separator: ", ")) from \(remote.location) into \(options.installRoot)",
            ["pid": .int(getpid()), "device_id": .string(deviceID)])
        for p in pendingRecovered { log("health", "\(p): the health check was interrupted; back on the version that passed, checking again") }
        var ok = false
        while !isStopping {
            ok = round()
            if once || fatalError != nil || isStopping { break }
            let delay: Double
            if ok {
                delay = options.interval
            } else {
                let exp = options.interval * pow(2, Double(max(0, state.consecutiveFailures - 1)))
                delay = min(options.maxBackoff, exp) * Double.random(in: 0.8...1.2)
            }
            sleep(seconds: delay)
        }
        log("stop", isStopping ? "stopped by signal" : "done", ["ok": .bool(ok)])
        return ok
    }

    private func sleep(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while !isStopping && Date() < deadline { Thread.sleep(forTimeInterval: min(0.1, max(0, deadline.timeIntervalSinceNow))) }
    }

    /// One round; never throws: failures are logged, counted and backed off.
    @discardableResult
    public func round() -> Bool {
        // Between rounds the daemon holds almost nothing: hand the heap a pull grew, and the
        // code pages the round ran, back to the system, so an idle device keeps its memory for
        // the model.
        defer {
            HeapRelease.now()
            HeapRelease.releaseCodePages()
        }
        if let window = options.window, !window.contains(time(nil)) {
            // Nothing is fetched or sent outside the window; the daemon keeps polling the clock.
            log("round", "outside the download window \(window) (local time): nothing to do until it opens")
            return true
        }
        state.rounds += 1
        state.lastRound = Timestamp.now()
        roundModel = nil
        roundBytes = [:]
        var failure: Error? = nil
        defer { sendReport(failure: failure) }
        do {
            let updates = try syncOnce()
            if state.consecutiveFailures > 0 {
                state.recoveries += 1
                log("recovered", "back to normal after \(state.consecutiveFailures) failed rounds")
            }
            state.consecutiveFailures = 0
            state.lastError = nil
            state.lastSuccess = Timestamp.now()
            if updates == 0 { log("round", "up to date (\(options.follow.count) models)") }
            saveState()
            return true
        } catch let error as SLMError where { if case .cancelled = error.kind { return true } else { return false } }() {
            failure = SLMError.cancelled
            // A stop request, not a fault: what was verified is kept for the next start.
            log("round", "interrupted by a stop request; resuming at the next start")
            saveState()
            return false
        } catch let error as SLMError where { if case .unsupportedFormat = error.kind { return true } else { return false } }() {
            fatalError = error
            failure = error
            state.lastError = error.description
            log("error", "\(error.description); keeping the installed versions and stopping (no retry can fix this)")
            saveState()
            return false
        } catch {
            failure = error
            state.consecutiveFailures += 1
            state.faults += 1
            let message = (error as? SLMError)?.description ?? "\(error)"
            state.lastError = message
            log("error", "\(message); keeping the installed versions, retrying with backoff", ["consecutive_failures": .int(state.consecutiveFailures)])
            saveState()
            return false
        }
    }

    /// Status is advisory: failing to save it must not fail the round, but must be seen.
    private func saveState() {
        do { try state.save(options.installRoot) } catch {
            log("error", "cannot save \(Self.stateName): \(error)")
        }
    }

    /// The manifest as far as the remote's signed release vouches for it (all of it when this
    /// device does not check releases). A manifest the server keeps answering 304 for while the
    /// release names versions it lacks is fetched again in full: a frozen manifest shows up as an
    /// error, not as "up to date".
    private func manifest() throws -> Manifest {
        roundRelease = nil
        let gate = store.releaseGate(for: remote.location, trusted: options.trustedKeys, installDirectory: options.installRoot)
        guard let release = try gate.acceptRelease(of: remote) else {
            return try manifest(conditional: true)
        }
        roundRelease = release
        var manifest = try self.manifest(conditional: true)
        func lacksSigned(_ m: Manifest) -> Bool {
            options.follow.contains { name, _ in
                let listed = Set(m.models[name.value]?.versions.map(\.version) ?? [])
                return release.models[name.value]?.stages.values.contains { !listed.contains($0) } ?? false
            }
        }
        if lacksSigned(manifest) { manifest = try self.manifest(conditional: false) }
        return release.restrict(manifest)
    }

    /// manifest.json with the versions of the followed models loaded: their entries files are
    /// read once each (they are named by their hash) and kept while the manifest names them.
    private func manifest(conditional: Bool) throws -> Manifest {
        let cache = options.installRoot + "/" + Self.manifestCacheName
        let haveCache = FileSystem.exists(cache)
        var m: Manifest
        switch try remote.readIfChanged(RemoteLayout.manifest, validator: haveCache && conditional ? state.manifestValidator : nil,
                                        limit: Manifest.maxEncodedSize) {
        case let .changed(bytes, validator):
            m = try Manifest.decode(bytes, source: "\(remote.location)/manifest.json")
            try FileSystem.writeAtomically(bytes, to: cache)
            state.manifestValidator = validator
        case .unchanged:
            m = try Manifest.decode(try FileSystem.readFile(cache, limit: Manifest.maxEncodedSize), source: cache)
        case .absent:
            throw SLMError.remote(url: "\(remote.location)/manifest.json", problem: "not found").remedied(by: .publish)
        }
        try m.loadVersions(of: Set(options.follow.map(\.0.value)), location: remote.location, cache: entriesCache, read: remote.read)
        entriesCache.keep(m)
        return m
    }

    /// Brings every followed model to its target; returns the number of models switched.
    func syncOnce() throws -> Int {
        let manifest = try self.manifest()
        var updates = 0
        for (name, selector) in options.follow {
            if isStopping { break }
            roundModel = name.value
            if try syncModel(name, selector, manifest: manifest) { updates += 1 }
        }
        roundModel = nil
        return updates
    }

    /// One followed model's part of a round: planned from the manifest and the device's records,
    /// then downloaded, installed, checked and recorded. Returns whether it switched versions.
    private func syncModel(_ name: ModelName, _ selector: String, manifest: Manifest) throws -> Bool {
        let dir = try InstallDirectory.forModel(name, under: options.installRoot)
        var rejected = try RejectedVersions.load(dir)
        let current = dir.current()
        let plan = try SyncModelPlan.decide(name, selector, manifest: manifest, location: remote.location, deviceID: deviceID,
                                            rejected: rejected, current: current, installedID: dir.installedID(of:),
                                            downloadOnly: options.downloadOnly)
        let target = plan.target
        var m = state.models[name.value] ?? SyncState.Model()
        m.rejected = rejected.versions
        m.remoteVersion = target.description
        state.models[name.value] = m
        switch plan.action {
        case .skipRejected, .upToDate, .awaitActivation: return false
        case .activate, .download: break
        }
        let started = Timestamp.monotonicSeconds()
        var fields: [String: JSONValue] = ["model": .string(name.value), "old": current.map { .string($0) } ?? .null,
                                           "new": .string(target.description)]
        var pulled: PullResult? = nil
        if plan.action == .activate {
            // Already on disk (a rollback, or downloaded by an earlier round): switch without downloading.
            fields["chunk_bytes"] = .int(0)
            fields["bytes_downloaded"] = .int(0)
        } else {
            let r = try download(name, plan, into: dir)
            pulled = r
            if options.downloadOnly {
                log("downloaded", "\(name) \(target) is in the device store; it is installed by a round that is not download-only",
                    ["model": .string(name.value), "version": .string(target.description), "bytes_downloaded": .int(r.bytesDownloaded)])
                return false
            }
            try installDependencies(of: r)
            fields["chunk_bytes"] = .int(r.chunkBytes)
            fields["chunks_fetched"] = .int(r.chunksFetched)
            fields["chunks_from_deltas"] = .int(r.chunksFromDeltas)
            fields["bytes_downloaded"] = .int(r.bytesDownloaded)
            fields["requests"] = .int(r.requests)
        }
        // Record the check before the flip, so a kill before the verdict is undone at restart.
        if options.healthCheck != nil { try PendingCheck(version: target.description, previous: current).save(dir) }
        let version = ResolvedVersion(name: name, version: target, id: plan.targetID, object: try store.readVersion(plan.targetID))
        _ = try store.installOrQuarantine(version, into: dir, keep: options.keep, batchBytes: checkoutBatchBytes,
                                          addedPacks: pulled?.addedPacks, brought: [version],
                                          // The mismatch is the error to report, whether or not the pending check clears.
                                          beforeQuarantine: { try? PendingCheck.clear(dir) }, dropped: "the device store")
        if let command = options.healthCheck {
            CrashPoint.hit("sync-before-health-check")
            let verdict = HealthCheck.run(command, environment: hookEnvironment(model: name.value, old: current, new: target.description),
                                          timeout: options.healthTimeout, stop: stop)
            guard verdict.ok else {
                try reject(plan, of: name, in: dir, rejected: &rejected, back: current, detail: verdict.detail)
                return false
            }
            try PendingCheck.clear(dir)
            fields["health_check"] = .string(verdict.detail)
        }
        fields["seconds"] = .double(((Timestamp.monotonicSeconds() - started) * 1000).rounded() / 1000)
        m.installed = target.description
        m.installedID = plan.targetID.hex
        m.since = Timestamp.now()
        state.models[name.value] = m
        try state.save(options.installRoot)
        log("update", "\(name): \(current ?? "none") -> \(target)", fields)
        runHook(model: name.value, old: current, new: target.description)
        prune(name, dir)
        return true
    }

    /// Pulls the plan's target into the device store only: the switch is the one place a version
    /// goes live. The fleet sees the device on its way first (a report that cannot go is only logged).
    private func download(_ name: ModelName, _ plan: SyncModelPlan, into dir: InstallDirectory) throws -> PullResult {
        sendReport(failure: nil, downloading: (name.value, plan.target.description))
        var pull = PullOptions()
        if FileSystem.isDirectory(dir.currentLink) { pull.seeds = [dir.currentLink] }
        if options.memoryBudget > 0 { pull.applyMemoryBudget(options.memoryBudget) }
        pull.useDeltas = options.useDeltas
        pull.trustedKeys = options.trustedKeys
        pull.acceptedRelease = roundRelease
        pull.knownVersionID = plan.targetID
        pull.maxInstallSize = options.maxInstallSize
        pull.maxExpansion = options.maxExpansion
        let stop = self.stop
        pull.isCancelled = { stop.isSet }
        let r = try store.pull(from: remote, ref: .exact(name, plan.target), options: pull)
        roundBytes[name.value] = r.bytesDownloaded
        guard r.versionID == plan.targetID else {
            throw SLMError.remote(url: remote.location, problem: "\(name)@\(plan.target) is \(r.versionID.hex.prefix(12)) but the manifest says \(plan.targetID.hex.prefix(12))")
        }
        return r
    }

    /// A failed health check: back to the version before (when it is still on disk), and the
    /// target recorded as rejected so later rounds do not retry it.
    private func reject(_ plan: SyncModelPlan, of name: ModelName, in dir: InstallDirectory, rejected: inout RejectedVersions,
                        back current: String?, detail: String) throws {
        if let current, dir.installedID(of: current) != nil { try dir.switchCurrent(to: current) } else { try dir.clearCurrent() }
        rejected.entries[plan.targetID.hex] = (plan.target.description, plan.rolloutReset, Timestamp.now())
        try rejected.save(dir)
        try PendingCheck.clear(dir)
        state.models[name.value]?.rejected = rejected.versions
        saveState()
        log("rejected", "\(name) \(plan.target) failed its health check (\(detail)); back on \(current ?? "nothing")",
            ["model": .string(name.value), "version": .string(plan.target.description), "detail": .string(detail)])
    }

    /// The round's report: how each followed model stands. Sending it never fails the round
    /// (a device that cannot report still updates); a failure to send is logged.
    private func sendReport(failure: Error?, downloading: (model: String, target: String)? = nil) {
        guard options.report, failure.map({ if case .cancelled? = ($0 as? SLMError)?.kind { return false } else { return true } }) ?? true else { return }
        var models: [String: DeviceReport.Model] = [:]
        for (name, _) in options.follow.prefix(DeviceReport.maxModels) {
            let m = state.models[name.value] ?? SyncState.Model()
            // The directory the round installs into, by the same rules (a name it refuses reports nothing installed).
            let installed = (try? InstallDirectory.forModel(name, under: options.installRoot))?.current()
            var entry = DeviceReport.Model(installed: installed, target: m.remoteVersion, state: .pending, bytesFetched: roundBytes[name.value] ?? 0)
            if let downloading, downloading.model == name.value {
                (entry.target, entry.state) = (downloading.target, .downloading)
            } else if let failure, roundModel == nil || roundModel == name.value {
                entry.state = .failed
                entry.errorClass = DeviceReport.errorClass(failure)
            } else if let t = m.remoteVersion, t != installed, m.rejected.contains(t) {
                entry.state = .rejected
            } else if m.remoteVersion != nil, m.remoteVersion == installed {
                entry.state = .installed
            }
            models[name.value] = entry
        }
        var sink = ReportSink(remote: remote, reportURL: options.reportURL)
        (sink.tls, sink.credentials, sink.remoteURL) = (options.tls, options.credentials, options.remote)
        let stop = self.stop
        sink.isCancelled = { stop.isSet }
        sink.signer = reportSigner
        do {
            try sink.send(DeviceReport(device: deviceID, time: Timestamp.now(), models: models))
        } catch {
            log("report", "could not send the device report: \((error as? SLMError)?.description ?? "\(error)")")
        }
    }

    /// The install's decode batches, sized by the memory budget as the pull's buffers are.
    private var checkoutBatchBytes: Int {
        var pull = PullOptions()
        if options.memoryBudget > 0 { pull.applyMemoryBudget(options.memoryBudget) }
        return pull.checkoutBatchBytes
    }

    /// Dependencies a pull brought along are installed beside the model (`<to>/<dependency>/`),
    /// unless that model is followed on its own.
    private func installDependencies(of r: PullResult) throws {
        let followed = Set(options.follow.map { $0.0.value })
        for label in r.versions.dropFirst() {
            let dep = try store.resolve(label)
            guard !followed.contains(dep.name.value) else { continue }
            let dir = try InstallDirectory.forModel(dep.name, under: options.installRoot)
            if dir.current() == dep.version.description && dir.installedID(of: dep.version.description) == dep.id { continue }
            try dir.installAndActivate(store: store, tree: try store.readTree(dep.object.tree), version: dep.version.description,
                                       id: dep.id, label: label, keep: options.keep, batchBytes: checkoutBatchBytes)
            log("update", "dependency \(dep.name): -> \(dep.version)", ["model": .string(dep.name.value), "new": .string(dep.version.description)])
        }
    }

    /// The environment of the update hook and the health check.
    private func hookEnvironment(model: String, old: String?, new: String) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["SLMSTORE_MODEL"] = model
        env["SLMSTORE_OLD_VERSION"] = old ?? ""
        env["SLMSTORE_NEW_VERSION"] = new
        env["SLMSTORE_INSTALL_DIR"] = "\(options.installRoot)/\(model)"
        env["SLMSTORE_DEVICE_ID"] = deviceID
        return env
    }

    private func runHook(model: String, old: String?, new: String) {
        guard let command = options.onUpdate else { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.environment = hookEnvironment(model: model, old: old, new: new)
        do {
            try p.run()
            p.waitUntilExit()
            if p.terminationStatus != 0 { log("error", "the update hook exited \(p.terminationStatus) for \(model) \(new)") }
        } catch {
            log("error", "the update hook could not start: \(error)")
        }
    }

    /// Keeps `keep` old installed versions; drops the rest from the device store and collects
    /// their chunks.
    private func prune(_ name: ModelName, _ dir: InstallDirectory) {
        dir.prune(keep: options.keep)
        let installed = Set(dir.installedVersions())
        var removed = 0
        do {
            for (v, id) in try store.versions(of: name) where !installed.contains(v.description) {
                do {
                    try store.removeVersion(ResolvedVersion(name: name, version: v, id: id, object: try store.readVersion(id)))
                    removed += 1
                } catch {
                    // Another version may still depend on it; it stays until that one goes.
                    log("prune", "keeping \(name)@\(v) in the device store: \(error)")
                }
            }
            if removed > 0 {
                let r = try store.gc()
                log("gc", "freed \(r.bytesFreed) bytes of \(removed) old versions of \(name)")
            }
        } catch {
            log("error", "pruning old versions of \(name) failed: \(error); they stay until the next update")
        }
    }
}
