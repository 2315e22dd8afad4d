// The device side: `sync` (the daemon) and `status`.

import Foundation
import SLMStoreKit

let syncCommands: [Command] = [syncCommand, statusCommand, fleetCommand]

let syncCommand = Command(
    name: "sync", summary: "Keep installed models on the versions a remote's stages point to (daemon)",
    usage: "slmstore sync REMOTE --to DIR --follow NAME@SELECTOR... [--interval 30s] [--keep N] [--on-update CMD] [--once] [--max-rate R] [--window HH:MM-HH:MM] [--download-only] [--log-format human|json]",
    details: """
    Each round fetches manifest.json with a conditional GET (and the entries file of each followed
    model, once per change of that model); for every followed model whose selected version
    (stage, range, latest) differs from DIR/<model>/current it pulls only the missing chunks,
    installs DIR/<model>/<version>/, flips DIR/<model>/current, runs --on-update
    (SLMSTORE_MODEL, SLMSTORE_OLD_VERSION, SLMSTORE_NEW_VERSION, SLMSTORE_INSTALL_DIR in its
    environment) and prunes to --keep old versions. Failures never touch installed versions: the
    daemon logs one line, backs off exponentially with jitter, and retries. One daemon per DIR.
    SIGTERM/SIGINT stop it between writes. The device's chunk store is DIR/.slmstore unless --store.
    A staged rollout on a followed stage (`slmstore rollout`) is taken by the share of devices whose
    id falls in it (DIR/.slmstore-device-id, generated once, or --device-id). Reports are signed
    with the device's own key (DIR/.slmstore-device-key, made once, mode 0600); the publisher
    counts them once it enrolled the device (`slmstore device show --to DIR` prints id and key).
      --health-check CMD    run after every switch (same environment as --on-update); a non-zero
                            exit or a timeout switches back and rejects the version for good
      --health-timeout T    default 60s
      --endpoint URL        S3-compatible endpoint for s3:// remotes
      --no-delta            download full records only, never deltas against the installed version
      --trust PUB           install only what release metadata signed by this key lists
                            (repeatable; also SLMSTORE_TRUST=FILE:FILE). See `pull --help`.
      --token-file F        send its token as Authorization: Bearer (also SLMSTORE_TOKEN)
      --netrc-file F        basic-auth credentials per host (default ~/.netrc)
      \(tlsHelp)
      --max-install-size S  refuse a version whose files add up to more than S (e.g. 8G)
      --max-expansion N     refuse a version whose new data is more than N times its download
                            (default 1024; 0: no limit). See `pull --help`.
      --memory-budget B     the peak memory a round's pull and install are sized for (default
                            64M; see `pull --help`). Between rounds the daemon returns its heap
                            and the code pages the round ran to the system.
      --report-url URL      PUT each round's device report to URL/<device id>.json (an nginx WebDAV
                            location, say); without it the report goes into the remote's reports/
                            when this device may write there (a directory, s3:// with its own
                            credentials). A report names versions and states, never credentials.
      --no-report           send no device reports
      --window HH:MM-HH:MM  start rounds (downloads and switches) only inside this daily window, in
                            local time (22:00-04:00 wraps midnight); a download running when it
                            closes finishes, one cut off resumes in the next window
      --download-only       bring new versions into the device store and stop: no install, switch,
                            health check or hook; a later round without it installs them with
                            nothing left to download (the report says pending meanwhile)
      --once   one round; exit 0 when up to date, 1 if the round failed
      --config FILE  the same settings as "key = value" lines (remote, to, follow (repeatable),
                     interval, keep, on-update, health-check, health-timeout, max-rate, max-backoff,
                     log-format, endpoint, device-id, store, trust, window, ...; see
                     /etc/slmstore/example.conf); options on the command line win
      --max-backoff T  the longest wait between rounds after failures (default 5m)
      --device-id ID   this device's id instead of DIR/.slmstore-device-id
      --store DIR      the device store (default DIR/.slmstore)
      --log-format human|json  one line per event, as text or JSON
    """,
    spec: OptionSpec(values: Set(["--to", "--follow", "--interval", "--keep", "--on-update", "--max-rate", "--log-format", "--max-backoff", "--endpoint",
                              "--device-id", "--health-check", "--health-timeout", "--config", "--memory-budget", "--trust", "--token-file", "--netrc-file", "--max-install-size", "--max-expansion", "--report-url", "--window"]).union(tlsOptionNames),
                     repeatable: ["--follow", "--trust"], flags: ["--once", "--no-delta", "--no-report", "--download-only"])
) { a0, ctx in
    // --config FILE: the same settings as "key = value" lines (remote, to, follow (repeatable),
    // interval, keep, on-update, health-check, health-timeout, max-rate, max-backoff, log-format,
    // endpoint, device-id, store); options on the command line win.
    var a = a0
    if let path = a0.value("--config") { a = try SyncConfigFile.merge(path, into: a0) }
    let o = try syncOptions(a, ctx: ctx)
    let daemon = try SyncDaemon(options: o)
    setvbuf(stdout, nil, _IOLBF, 0)
    daemon.emit = { line in print(line); fflush(stdout) }
    var sources: [DispatchSourceSignal] = []
    for sig in [SIGTERM, SIGINT] {
        signal(sig, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        let stop = daemon.stop
        s.setEventHandler { stop.set() }
        s.resume()
        sources.append(s)
    }
    let ok = daemon.run(once: a.has("--once"))
    _ = sources
    if let fatal = daemon.fatalError { return exitCode(for: fatal) }
    return ok ? 0 : 1
}

let statusCommand = Command(
    name: "status", summary: "What a device has installed, since when, what the remote says, last error",
    usage: "slmstore status --to DIR [--json]",
    details: "",
    spec: OptionSpec(values: ["--to"], flags: ["--json"])
) { a, _ in
    guard let to = a.value("--to") else { throw SLMError.argument("status: --to DIR is required") }
    guard FileSystem.isDirectory(to) else { throw SLMError.input(path: to, problem: "no such directory") }
    // A directory `pull --to` keeps is one model's: say what it holds and where it came from.
    let single = InstallDirectory(root: to)
    if !FileSystem.exists(to + "/" + SyncDaemon.stateName), let current = single.current() {
        let pulled = single.lastPull()
        let installed = single.installedVersions().sorted()
        if a.has("--json") {
            Output.json(.object(["directory": .string(to), "remote": pulled.map { .string($0.remote) } ?? .null, "daemon_running": .bool(false),
                                 "models": .object([pulled?.model ?? "": .object(["current": .string(current), "since": pulled.map { .string($0.time) } ?? .null,
                                                                                    "installed": .array(installed.map { .string($0) })])])]))
        } else {
            print("\(to): installed by `slmstore pull`\(pulled.map { " from \($0.remote)" } ?? ""); no sync daemon")
            print(Output.table([["MODEL", "CURRENT", "SINCE", "INSTALLED"],
                                [pulled?.model ?? "-", current, pulled?.time ?? "-", installed.joined(separator: ",")]]))
        }
        return 0
    }
    let state = SyncState.load(to)
    var running = false
    if let probe = try? FileLock(tryExisting: to + "/" + SyncDaemon.lockName, mode: .exclusive) { probe.unlock() } else {
        running = FileSystem.exists(to + "/" + SyncDaemon.lockName)
    }
    var models: [String: JSONValue] = [:]
    var rows = [["MODEL", "CURRENT", "SINCE", "REMOTE", "INSTALLED"]]
    let names = Set(state.models.keys)
    for name in names.sorted() {
        let dir = InstallDirectory(root: "\(to)/\(name)")
        let m = state.models[name]
        let current = dir.current()
        models[name] = .object(["current": current.map { .string($0) } ?? .null, "since": m?.since.map { .string($0) } ?? .null,
                                "remote_version": m?.remoteVersion.map { .string($0) } ?? .null,
                                "rejected": .array((m?.rejected ?? []).map { .string($0) }),
                                "installed": .array(dir.installedVersions().sorted().map { .string($0) })])
        rows.append([name, current ?? "-", m?.since ?? "-", m?.remoteVersion ?? "-", dir.installedVersions().sorted().joined(separator: ",")])
    }
    if a.has("--json") {
        Output.json(.object(["directory": .string(to), "remote": .string(state.remote), "daemon_running": .bool(running),
                             "rounds": .int(state.rounds), "last_round": state.lastRound.map { .string($0) } ?? .null,
                             "last_success": state.lastSuccess.map { .string($0) } ?? .null,
                             "consecutive_failures": .int(state.consecutiveFailures),
                             "last_error": state.lastError.map { .string($0) } ?? .null, "models": .object(models)]))
        return 0
    }
    print("\(to): following \(state.remote.isEmpty ? "(never synced)" : state.remote); daemon \(running ? "running (pid \(state.pid))" : "not running")")
    print("last round \(state.lastRound ?? "never"), last success \(state.lastSuccess ?? "never"), consecutive failures \(state.consecutiveFailures)")
    if let e = state.lastError { print("last error: \(e)") }
    for name in names.sorted() where !(state.models[name]?.rejected.isEmpty ?? true) {
        print("\(name): rejected by its health check: \(state.models[name]!.rejected.joined(separator: ", "))")
    }
    if rows.count > 1 { print(Output.table(rows)) }
    return 0
}

/// "30s", "5m", "1h", "250ms" or plain seconds.
func parseDuration(_ s: String, option: String) throws -> Double {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    // A century at most, and finite: callers turn seconds into integers, which must not trap.
    func bounded(_ v: Double) throws -> Double {
        guard v.isFinite, v <= 100 * 365 * 86400 else { throw SLMError.argument("\(option): \"\(s)\" is longer than a century") }
        return v
    }
    for (suffix, mult) in units where s.hasSuffix(suffix) {
        if let v = Double(s.dropLast(suffix.count)), v > 0 { return try bounded(v * mult) }
    }
    if let v = Double(s), v > 0 { return try bounded(v) }
    throw SLMError.argument("\(option): \"\(s)\" is not a duration like 30s, 5m or 250ms")
}

/// The sync daemon's settings as a file (what `slmstore-sync@.service` reads from
/// /etc/slmstore/<instance>.conf): one `key = value` per line, `#` comments, `follow` repeatable.
enum SyncConfigFile {
    static let keys: Set<String> = ["remote", "to", "follow", "interval", "keep", "on-update", "health-check", "health-timeout",
                                    "max-rate", "max-backoff", "log-format", "endpoint", "device-id", "store", "memory-budget", "trust", "token-file", "netrc-file", "max-install-size",
                                    "max-expansion", "cacert", "cert", "key", "report-url", "window"]

    static func merge(_ path: String, into a: ParsedArguments) throws -> ParsedArguments {
        let text: String
        do { text = String(decoding: try FileSystem.readFile(path, limit: 1 << 20), as: UTF8.self) } catch {
            throw SLMError.input(path: path, problem: "cannot read the sync configuration (\(error))")
        }
        var out = a
        var fromFile: [String: [String]] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else { throw SLMError.input(path: path, problem: "line \(n + 1): expected key = value") }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard keys.contains(key) else {
                throw SLMError.input(path: path, problem: "line \(n + 1): unknown key \"\(key)\" (known: \(keys.sorted().joined(separator: ", ")))")
            }
            fromFile[key, default: []].append(value)
        }
        if out.positionals.isEmpty, let remote = fromFile["remote"]?.last { out.positionals = [remote] }
        for (key, values) in fromFile where key != "remote" {
            let option = "--" + key
            if out.values[option] == nil { out.values[option] = values }
        }
        return out
    }
}

/// --max-expansion N: a whole factor, 0 for none.
func parseExpansion(_ s: String) throws -> UInt64 {
    guard let n = UInt64(s), n <= 1 << 20 else { throw SLMError.argument("--max-expansion must be a whole number from 0 (no limit) to 1048576, not \"\(s)\"") }
    return n
}

let fleetCommand = Command(
    name: "fleet", summary: "What the devices report: per model and version, who runs it, is going for it, rejected or failed it",
    usage: "slmstore fleet REMOTE [--silent-after 24h] [--target NAME@VERSION] [--apply [--sign KEY]...] [--web] [--endpoint URL] [--json]",
    details: """
    Reads the report of every device enrolled for REMOTE in this (the publisher's) store (`slmstore
    device enroll`) from REMOTE's reports/ (a directory or s3://; what `sync` writes after each
    round, signed by the device's key) and counts, per model and version: devices running it,
    going for it (pending), that rejected it (health check) or failed on it, and running it but
    silent for longer than --silent-after (default 24h). Each active rollout in the manifest is
    shown with its share and failure rate (rejected + failed over the devices that took it).
    Only enrolled devices' valid reports count, one per device. Everything else under reports/ is
    listed apart and never counted: unenrolled devices (with the key to enroll), unsigned,
    forged (not signed by the enrolled key), replayed (a counter below one seen before),
    misnamed, future-dated and damaged files; at most 10,000 other files are listed and 1,000
    read per run (the rest are counted as skipped), and a FIFO or other non-file is skipped.
      --apply  act on what the reports say, from this (the publisher's) store: every active rollout
               started with --halt-on-failure whose failure rate passed it, counted over at least
               its --min-devices devices, is halted here (with the reason in `history`) and pushed
               to REMOTE, so devices on it go back at their next round; every rollout started with
               --advance-after whose last step is that old, taken by at least --min-devices devices
               and not failing, is raised by its step (to 100%: the stage moves, through the
               promotion gates) and pushed. Run it from cron or CI. A remote with signed releases
               needs --sign KEY (and --expires), so devices see the change. Only enrolled devices'
               reports younger than --silent-after decide; while forged, replayed, misnamed or
               future-dated reports are present nothing advances (halts still happen) and the
               rollout is listed as held, with why.
      --target NAME@VERSION  what the fleet will download to reach that version (from this store):
               per version devices run, how many, and what one of them fetches (`diff`, with
               delta records where REMOTE has a delta set from that version), and the total
      --endpoint URL  S3-compatible endpoint for an s3:// REMOTE
      \(tlsHelp)
      --web    write the fleet page, REMOTE's web/fleet.html (beside the registry pages push writes),
               from what this run read (after --apply's changes are pushed)
      --json   devices, enrolled, missing, models {model: {version: {running, pending, rejected,
               failed, silent, bytes_fetched}}}, rollouts, silent_devices, damaged, refused
               [{file, device, reason, detail, key}], skipped, halted, advanced, held
    """,
    spec: OptionSpec(values: Set(["--silent-after", "--endpoint", "--sign", "--expires", "--target"]).union(tlsOptionNames), repeatable: ["--sign"],
                     flags: ["--json", "--apply", "--web"])
) { a, ctx in
    try requirePositionals(a, "fleet", min: 1, max: 1, usage: "slmstore fleet REMOTE")
    let silentAfter = try a.value("--silent-after").map { try parseDuration($0, option: "--silent-after") } ?? 86400
    var remoteOptions = cliRemoteOptions()
    remoteOptions.endpoint = a.value("--endpoint")
    remoteOptions.tls = tlsFiles(a)
    let opened = try Remotes.open(a.positionals[0], options: remoteOptions)
    guard let remote = opened as? any StoreBackend else {
        if a.has("--web") || a.has("--apply") {
            throw SLMError.argument("fleet \(a.has("--web") ? "--web" : "--apply"): \(opened.location) is read-only here; run it where you push from")
        }
        throw SLMError.argument("fleet: \(opened.location) is a static web server, which cannot list the reports; run fleet on the directory or bucket it serves")
    }
    // The rollouts come from the manifest; a remote without one still has reports to count.
    var manifest: Manifest? = nil
    if let bytes = try remote.read(RemoteLayout.manifest, limit: Manifest.maxEncodedSize) {
        manifest = try Manifest.decode(bytes, source: "\(remote.location)/\(RemoteLayout.manifest)")
    }
    // The enrolled set and the counters seen are this store's: a remote writer can change neither.
    let store = try ctx.openStore()
    let enrolled = try DeviceEnrollment.load(store: store, location: remote.location)
    var counters = try ReportCounters.load(store: store, location: remote.location)
    let view = try Fleet.view(of: remote, manifest: manifest, enrolled: enrolled, counters: &counters, now: time(nil), silentAfter: silentAfter)
    try counters.save(store: store, location: remote.location)
    let download = try a.value("--target").map { t in try ctx.openStore().fleetDownload(view, to: try ctx.openStore().resolve(t), remote: remote) }
    var actions: [FleetAction] = []
    if a.has("--apply") {
        let signing = try signingOptions(a, command: "fleet")
        if signing == nil, try remote.exists(SignedRelease.path) {
            throw SLMError.argument("fleet --apply: \(remote.location) has signed releases; pass --sign KEY so devices see a halt")
        }
        var push = PushOptions()
        push.signing = signing
        push.pages = RegistryPages()
        actions = try ctx.openStore().applyFleet(view, to: remote, now: time(nil), push: push)
    }
    if a.has("--web") {
        try remote.write(SiteLayout.fleet, bytes: Array(RegistrySite.fleetPage(view, generated: Timestamp.now()).utf8))
    }
    if a.has("--json") {
        Output.json(fleetJSON(view, actions: actions, download: download))
    } else {
        printFleet(view, actions: actions, download: download, location: remote.location, silentAfter: silentAfter)
    }
    return 0
}

/// `fleet --json`: the counts, what was refused, the rollouts and what --apply did.
func fleetJSON(_ view: FleetView, actions: [FleetAction], download: FleetDownload?) -> JSONValue {
    func counts(_ c: FleetView.Counts) -> JSONValue {
        .object(["running": .int(c.running), "pending": .int(c.pending), "rejected": .int(c.rejected), "failed": .int(c.failed),
                 "silent": .int(c.silent), "bytes_fetched": .int(c.bytesFetched), "failure_rate": .double((c.failureRate * 10000).rounded() / 10000)])
    }
    return .object([
        "devices": .int(view.devices),
        "enrolled": .int(view.enrolled),
        "missing": .array(view.missing.map { .string($0) }),
        "refused": .array(view.refused.map { r in
            .object(["file": .string(r.file), "device": r.device.map { .string($0) } ?? .null, "reason": .string(r.reason.rawValue),
                     "detail": .string(r.detail), "key": r.key.map { .string($0.hex) } ?? .null])
        }),
        "skipped": .int(view.skipped),
        "models": .object(view.models.mapValues { .object($0.mapValues(counts)) }),
        "rollouts": .array(view.rollouts.map { .object(["model": .string($0.model), "stage": .string($0.stage), "version": .string($0.version),
                                                        "percent": .double($0.percent), "counts": counts($0.counts)]) }),
        "silent_devices": .array(view.silentDevices.map { .string($0) }),
        "damaged": .array(view.damaged.map { .string($0) }),
        "halted": .array(actions.compactMap {
            guard case let .halted(m, stage, reason) = $0 else { return nil }
            return .object(["rollout": .string("\(m)@\(stage)"), "reason": .string(reason)])
        }),
        "advanced": .array(actions.compactMap {
            guard case let .advanced(m, stage, from, to) = $0 else { return nil }
            return .object(["rollout": .string("\(m)@\(stage)"), "from": .double(from), "to": .double(to)])
        }),
        "download": download.map { d in
            .object(["target": .string(d.target), "total_bytes": .int(d.totalBytes), "devices_unknown": .int(d.devicesUnknown),
                     "from": .array(d.rows.map { r in
                         .object(["version": .string(r.from), "devices": .int(r.devices), "bytes_each": r.bytesEach.map { .int($0) } ?? .null,
                                  "via_deltas": .bool(r.viaDeltas)])
                     })])
        } ?? .null,
        "held": .array(actions.compactMap {
            guard case let .held(m, stage, reason) = $0 else { return nil }
            return .object(["rollout": .string("\(m)@\(stage)"), "reason": .string(reason)])
        }),
    ])
}

/// `fleet` for people: the counts as a table, rollouts, the download to a target, what was not
/// counted and what --apply did.
func printFleet(_ view: FleetView, actions: [FleetAction], download: FleetDownload?, location: String, silentAfter: Double) {
    print("\(view.devices) of \(view.enrolled) enrolled devices reporting to \(location)")
    if view.enrolled == 0 {
        Output.warning("no device is enrolled for \(location) in this store, so no report counts; enroll devices with `slmstore device enroll \(location) DEVICE-ID`")
    }
    var rows = [["MODEL", "VERSION", "RUNNING", "PENDING", "REJECTED", "FAILED", "SILENT"]]
    for (model, versions) in view.models.sorted(by: { $0.key < $1.key }) {
        for (v, c) in versions.sorted(by: { a, b in
            // Versions in reports were checked as SemVer when decoded.
            guard let x = SemVer(parsing: a.key), let y = SemVer(parsing: b.key) else { return a.key < b.key }
            return x < y
        }) {
            rows.append([model, v, "\(c.running)", "\(c.pending)", "\(c.rejected)", "\(c.failed)", "\(c.silent)"])
        }
    }
    if rows.count > 1 { print(Output.table(rows)) }
    for r in view.rollouts {
        print("rollout \(r.model)@\(r.stage) -> \(r.version) at \(Output.fixed(r.percent, 1))%: \(r.counts.running) running, \(r.counts.rejected + r.counts.failed) rejected or failed (\(Output.fixed(r.counts.failureRate * 100, 1))%)")
    }
    if let d = download {
        print("to reach \(d.target): \(Output.bytes(d.totalBytes)) in all")
        var rows = [["FROM", "DEVICES", "EACH", "DELTAS"]]
        for r in d.rows { rows.append([r.from, "\(r.devices)", r.bytesEach.map(Output.bytes) ?? "not in this store", r.viaDeltas ? "yes" : "no"]) }
        if rows.count > 1 { print(Output.table(rows)) }
    }
    if !view.silentDevices.isEmpty { print("silent for more than \(Int(silentAfter)) s: \(view.silentDevices.joined(separator: ", "))") }
    var byReason: [FleetView.Refused.Reason: [FleetView.Refused]] = [:]
    for r in view.refused { byReason[r.reason, default: []].append(r) }
    for reason in FleetView.Refused.Reason.allCases {
        guard let list = byReason[reason] else { continue }
        print("not counted, \(reason.rawValue) (\(list.count)):")
        for r in list.prefix(20) { print("  \(Output.terminalSafe(r.detail, keepNewlines: false))\(r.key.map { " key \($0.hex)" } ?? "")") }
        if list.count > 20 { print("  … and \(list.count - 20) more (--json lists all)") }
    }
    if view.skipped > 0 { Output.warning("\(view.skipped) more files under reports/ were not read (one run reads a bounded number)") }
    for action in actions {
        switch action {
        case let .halted(m, stage, reason): print("halted \(m)@\(stage): \(reason)")
        case let .advanced(m, stage, from, to): print("advanced \(m)@\(stage) from \(Output.fixed(from, 1))% to \(Output.fixed(to, 1))%")
        case let .held(m, stage, reason): Output.warning("\(m)@\(stage) is due for its next step but stays: \(reason)")
        }
    }
}

/// The daemon's settings from `sync`'s options (after --config merged its file in).
func syncOptions(_ a: ParsedArguments, ctx: Context) throws -> SyncOptions {
    try requirePositionals(a, "sync", min: 1, max: 1, usage: "slmstore sync REMOTE --to DIR --follow NAME@STAGE (or --config FILE)")
    guard let to = a.value("--to") else { throw SLMError.argument("sync: --to DIR is required") }
    let follows = a.all("--follow")
    guard !follows.isEmpty else { throw SLMError.argument("sync: give at least one --follow NAME@STAGE (e.g. intent-classifier@production)") }
    var pairs: [(ModelName, String)] = []
    for f in follows {
        switch try VersionRef.parse(f) {
        case let .exact(n, v): pairs.append((n, v.description))
        case let .selector(n, s): pairs.append((n, s))
        case .id: throw SLMError.argument("sync: --follow needs NAME@STAGE or NAME@RANGE, not a version id")
        }
    }
    var o = SyncOptions(remote: a.positionals[0], installRoot: to, follow: pairs)
    o.endpoint = a.value("--endpoint")
    o.deviceID = a.value("--device-id")
    o.useDeltas = !a.has("--no-delta")
    o.trustedKeys = try trustedKeys(a)
    o.credentials.tokenFile = a.value("--token-file")
    if let m = a.value("--max-install-size") { o.maxInstallSize = try parseSize(m, option: "--max-install-size") }
    if let x = a.value("--max-expansion") { o.maxExpansion = try parseExpansion(x) }
    o.credentials.netrcFile = a.value("--netrc-file")
    o.tls = tlsFiles(a)
    o.report = !a.has("--no-report")
    o.reportURL = a.value("--report-url")
    o.window = try a.value("--window").map { try DownloadWindow(parsing: $0) }
    o.downloadOnly = a.has("--download-only")
    if let b = a.value("--memory-budget") { o.memoryBudget = try parseSize(b, option: "--memory-budget") }
    o.healthCheck = a.value("--health-check")
    if let t = a.value("--health-timeout") { o.healthTimeout = try parseDuration(t, option: "--health-timeout") }
    if let i = a.value("--interval") { o.interval = try parseDuration(i, option: "--interval") }
    if let b = a.value("--max-backoff") { o.maxBackoff = try parseDuration(b, option: "--max-backoff") }
    if let k = a.value("--keep") {
        guard let n = Int(k), n >= 0 else { throw SLMError.argument("sync: --keep must be a number >= 0") }
        o.keep = n
    }
    o.onUpdate = a.value("--on-update")
    if let r = a.value("--max-rate") { o.maxBytesPerSecond = try parseRate(r, option: "--max-rate") }
    switch a.value("--log-format") ?? "human" {
    case "human": o.jsonLogs = false
    case "json": o.jsonLogs = true
    case let other: throw SLMError.argument("sync: --log-format must be human or json, not \"\(other)\"")
    }
    o.storePath = ctx.explicitStore ?? a.value("--store")
    return o
}
