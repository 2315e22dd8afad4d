// Registry commands: metrics, policy, promote, rollback, history, resolve, card-keys.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

let registryCommands: [Command] = [webCommand, rolloutCommand, metricsCommand, policyCommand, promoteCommand, rollbackCommand, historyCommand, resolveCommand, cardKeysCommand]

let metricsCommand = Command(
    name: "metrics", summary: "Record or show a version's evaluation metrics",
    usage: "slmstore metrics REF [set KEY=VALUE... [--source S]] [--json]",
    details: "Metrics live beside the version (not inside it): each `set` appends a record with time, author and source.\nNumbers are stored as numbers and compared numerically by promotion gates.",
    spec: OptionSpec(values: ["--source"], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "metrics", min: 1, max: Int.max, usage: "slmstore metrics REF [set KEY=VALUE...]")
    let store = try ctx.openStore()
    let r = try store.resolve(a.positionals[0])
    if a.positionals.count > 1 {
        guard a.positionals[1] == "set", a.positionals.count > 2 else {
            throw SLMError.argument("metrics: expected `set KEY=VALUE...` after the reference")
        }
        var values: [String: JSONValue] = [:]
        for kv in a.positionals.dropFirst(2) {
            guard let eq = kv.firstIndex(of: "="), eq != kv.startIndex else { throw SLMError.argument("metrics: \"\(kv)\" is not KEY=VALUE") }
            let key = String(kv[..<eq]), raw = String(kv[kv.index(after: eq)...])
            if let v = try? JSONValue.parse(raw), case .number = v { values[key] = v } else { values[key] = .string(raw) }
        }
        let rec = try store.addMetrics(r, values: values, source: a.value("--source") ?? "cli")
        if a.has("--json") { Output.json(.object(["version": .string("\(r.name)@\(r.version)"), "time": .string(rec.time), "values": .object(rec.values)])) }
        else { print("recorded \(values.keys.sorted().map { "\($0)=\(values[$0]!.canonicalString())" }.joined(separator: " ")) for \(r.name)@\(r.version)") }
        return 0
    }
    let history = try store.metricHistory(r.name, r.version)
    let latest = try store.latestMetrics(r.name, r.version)
    if a.has("--json") {
        Output.json(.object(["version": .string("\(r.name)@\(r.version)"), "latest": .object(latest),
                             "history": .array(history.map { .object(["time": .string($0.time), "by": .string($0.by), "source": .string($0.source), "values": .object($0.values)]) })]))
        return 0
    }
    if latest.isEmpty { print("no metrics recorded for \(r.name)@\(r.version)"); return 0 }
    print("latest:")
    for k in latest.keys.sorted() { print("  \(k) = \(latest[k]!.canonicalString())") }
    print("history:")
    for h in history { print("  \(h.time)  \(h.by)  \(h.source)  " + h.values.keys.sorted().map { "\($0)=\(h.values[$0]!.canonicalString())" }.joined(separator: " ")) }
    return 0
}

let policyCommand = Command(
    name: "policy", summary: "Show or set a model's promotion gates",
    usage: "slmstore policy NAME [set 'production: accuracy >= 0.93, f1 >= 0.9; staging: ...' | set --file FILE] [--json]",
    details: "Gates are metric thresholds checked on the version's latest metrics when it is promoted.",
    spec: OptionSpec(values: ["--file"], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "policy", min: 1, max: 3, usage: "slmstore policy NAME [set POLICY]")
    let store = try ctx.openStore()
    let name = try ModelName(a.positionals[0])
    if a.positionals.count > 1 {
        guard a.positionals[1] == "set" else { throw SLMError.argument("policy: expected `set` after the model name") }
        let text: String
        if let file = a.value("--file") {
            text = String(decoding: try FileSystem.readFile(file, limit: 1 << 20), as: UTF8.self)
        } else {
            guard a.positionals.count == 3 else { throw SLMError.argument("policy set: give the policy text or --file FILE") }
            text = a.positionals[2]
        }
        let policy = try PromotionPolicy(parsing: text)
        try store.setPolicy(of: name, policy)
        print("policy for \(name): \(policy.text)")
        return 0
    }
    let p = try store.policy(of: name)
    if a.has("--json") {
        Output.json(.object(["name": .string(name.value), "gates": .object(p.gates.mapValues { gs in
            .array(gs.map { .object(["metric": .string($0.metric), "op": .string($0.op), "value": .number($0.text)]) })
        })]))
    } else {
        print(p.gates.isEmpty ? "no gates for \(name)" : p.text)
    }
    return 0
}

let promoteCommand = Command(
    name: "promote", summary: "Move a stage (staging, production, archived) to a version, through the gates",
    usage: "slmstore promote NAME@VERSION STAGE [--skip-staging] [--allow-breaking] [--reason TEXT] [--json]",
    details: """
    Gates: the model's metric thresholds for the stage; production only from the version in staging
    (unless --skip-staging); no major-version jump from current production (unless --allow-breaking);
    every dependency resolves. Every attempt is recorded in the history, with --reason if given.
    """,
    spec: OptionSpec(values: ["--reason"], flags: ["--skip-staging", "--allow-breaking", "--json"])
) { a, ctx in
    try requirePositionals(a, "promote", min: 2, max: 2, usage: "slmstore promote NAME@VERSION STAGE")
    let store = try ctx.openStore()
    let r = try store.resolve(a.positionals[0])
    var options = PromoteOptions()
    // The concurrency test's window: both processes read the stage before either writes it.
    if let ms = getenv("SLMSTORE_PROMOTE_PAUSE_MS").map({ String(cString: $0) }), let n = UInt32(ms) {
        options.beforeCommit = { usleep(n * 1000) }
    }
    options.skipStaging = a.has("--skip-staging")
    options.allowBreaking = a.has("--allow-breaking")
    options.reason = a.value("--reason")
    let rec = try store.promote(r, to: a.positionals[1], options: options)
    if a.has("--json") {
        Output.json(.object(["name": .string(r.name.value), "stage": .string(rec.stage), "from": rec.from.map { .string($0) } ?? .null,
                             "to": .string(rec.to), "version_id": .string(r.id.hex)]))
    } else {
        print("\(r.name)@\(rec.stage): \(rec.from ?? "none") -> \(rec.to)")
    }
    return 0
}

let rollbackCommand = Command(
    name: "rollback", summary: "Move a stage back to the version that held it before",
    usage: "slmstore rollback NAME STAGE [--reason TEXT] [--json]",
    details: "The move and --reason are recorded in the history.",
    spec: OptionSpec(values: ["--reason"], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "rollback", min: 2, max: 2, usage: "slmstore rollback NAME STAGE")
    let store = try ctx.openStore()
    let name = try ModelName(a.positionals[0])
    let rec = try store.rollback(name, stage: a.positionals[1], reason: a.value("--reason"))
    if a.has("--json") {
        Output.json(.object(["name": .string(name.value), "stage": .string(rec.stage), "from": .string(rec.from ?? ""), "to": .string(rec.to)]))
    } else {
        print("\(name)@\(rec.stage) rolled back: \(rec.from ?? "none") -> \(rec.to)")
    }
    return 0
}

let historyCommand = Command(
    name: "history", summary: "Every promotion and rollback of a model: when, who, from, to, outcome",
    usage: "slmstore history NAME [--json]",
    details: "",
    spec: OptionSpec(flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "history", min: 1, max: 1, usage: "slmstore history NAME")
    let store = try ctx.openStore()
    let name = try ModelName(a.positionals[0])
    guard !(try store.versions(of: name)).isEmpty else { throw SLMError.notFound("unknown model \(name)") }
    let h = try store.history(of: name)
    if a.has("--json") {
        Output.json(.object(["name": .string(name.value), "history": .array(h.map {
            .object(["time": .string($0.time), "by": .string($0.by), "action": .string($0.action), "stage": .string($0.stage),
                     "from": $0.from.map { .string($0) } ?? .null, "to": .string($0.to), "outcome": .string($0.outcome),
                     "reason": $0.reason.map { .string($0) } ?? .null])
        })]))
        return 0
    }
    if h.isEmpty { print("no promotions yet for \(name)"); return 0 }
    print(Output.table([["TIME", "BY", "ACTION", "STAGE", "FROM", "TO", "OUTCOME"]] + h.map {
        [$0.time, $0.by, $0.action, $0.stage, $0.from ?? "-", $0.to, $0.outcome]
    }))
    return 0
}

let resolveCommand = Command(
    name: "resolve", summary: "Print the version (and id) a reference resolves to, and why",
    usage: "slmstore resolve REF [--json]",
    details: "REF: NAME@VERSION, NAME@STAGE (production, staging, development, archived), NAME@latest,\nNAME@RANGE (^2.1, ~2.1.3, '>=2.0.0 <3.0.0', 2.x) or a version id.",
    spec: OptionSpec(flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "resolve", min: 1, max: 1, usage: "slmstore resolve REF")
    let store = try ctx.openStore()
    let ref = try VersionRef.parse(a.positionals[0])
    let r: ResolvedVersion
    let reason: String
    switch ref {
    case let .selector(name, sel):
        let s = try store.resolveSelector(name: name, selector: sel)
        r = s.resolved; reason = s.reason
    case .exact:
        r = try store.resolve(ref); reason = "exact version"
    case .id:
        r = try store.resolve(ref); reason = "version id prefix"
    }
    if a.has("--json") {
        Output.json(.object(["name": .string(r.name.value), "version": .string(r.version.description), "version_id": .string(r.id.hex),
                             "reason": .string(reason), "tree_id": .string(r.object.tree.hex)]))
    } else {
        print("\(r.name)@\(r.version) \(r.id.hex) (\(reason))")
    }
    return 0
}

let cardKeysCommand = Command(
    name: "card-keys", summary: "Show or set the model-card keys this store requires",
    usage: "slmstore card-keys [set KEY...] [--json]",
    details: "Keys are dotted paths (e.g. model_id training.dataset_hash). By default none are required.",
    spec: OptionSpec(flags: ["--json"])
) { a, ctx in
    let store = try ctx.openStore(create: true)
    if let first = a.positionals.first {
        guard first == "set" else { throw SLMError.argument("card-keys: expected `set KEY...`") }
        try store.setRequiredCardKeys(Array(a.positionals.dropFirst()))
    }
    let keys = try store.requiredCardKeys()
    if a.has("--json") { Output.json(.object(["required": .array(keys.map { .string($0) })])) }
    else { print(keys.isEmpty ? "no card keys required" : "required card keys: \(keys.joined(separator: ", "))") }
    return 0
}

let webCommand = Command(
    name: "web", summary: "Write the registry as static pages for a local store, to open from disk",
    usage: "slmstore web DIR [--json]",
    details: """
    Writes DIR/web/index.html (every model: versions, stages, size, last change), a page per model
    (versions, who added them, what each cost, stage history, gates) and a page per version (model
    card, metrics, provenance, files with SHA-256, tensors, dependencies, what changed since the
    parent and what an edge device downloads). Plain HTML and CSS, no scripts, no external files;
    every value from a card or a name is escaped. `push` writes the same pages into a remote.
      --json   pages, seconds, index
    """,
    spec: OptionSpec(flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "web", min: 1, max: 1, usage: "slmstore web DIR")
    let dir = a.positionals[0]
    let store = try ctx.openStore()
    let started = Timestamp.monotonicSeconds()
    let out = LocalBackend(root: dir)
    let pages = try store.writeSite(models: try store.models(), rows: try store.siteIndexRows(),
                                    project: FileSystem.basename(FileSystem.absolutePath(store.root))) { path, bytes in
        try out.write(path, bytes: bytes)
    }
    let seconds = Timestamp.monotonicSeconds() - started
    let index = dir + "/" + SiteLayout.index
    if a.has("--json") {
        Output.json(.object(["pages": .int(pages), "seconds": .double((seconds * 1000).rounded() / 1000), "index": .string(index)]))
    } else {
        print("wrote \(pages) pages in \(Output.fixed(seconds, 2)) s; open \(index)")
    }
    return 0
}

enum RolloutFormat {
    static func percent(_ p: Double) -> String { p == p.rounded() ? String(Int(p)) : String(p) }
}

let rolloutCommand = Command(
    name: "rollout", summary: "Put a version on a stage for a share of devices; raise, complete or halt it",
    usage: "slmstore rollout NAME@VERSION STAGE --percent P [--halt-on-failure F%] [--advance-after D [--advance-step P]] [--min-devices N]\n                 [--reason TEXT] [--reset-rejections] [--skip-staging] [--allow-breaking] [--json]\n       slmstore rollout NAME STAGE --halt [--reason TEXT] [--json]",
    details: """
    The stage keeps its current version for the other devices; each device decides from its own id
    whether it is in the share (a hash of device id, model and version), so raising P only adds
    devices and every rollout samples a different slice. --percent 100 completes the rollout: the
    stage moves, through the same gates as `promote`. --halt stops it: devices on the version go
    back to the stage's version at their next round. --reset-rejections lets devices whose health
    check rejected the version try it again. Every step is in `history`; `push` publishes it.
      --halt-on-failure F  halt by itself (when the publisher runs `slmstore fleet REMOTE --apply`)
                           once more than F% (e.g. 5%) of the devices that took the version rejected
                           or failed it, counting from --min-devices N such devices (default 10)
      --advance-after D    raise the share by itself (`fleet --apply`) by --advance-step P (default:
                           the starting percent) each time D (e.g. 2h) passed since the last step,
                           once --min-devices devices took the version and it is not failing
    """,
    spec: OptionSpec(values: ["--percent", "--reason", "--halt-on-failure", "--min-devices", "--advance-after", "--advance-step"], flags: ["--halt", "--reset-rejections", "--skip-staging", "--allow-breaking", "--json"])
) { a, ctx in
    try requirePositionals(a, "rollout", min: 2, max: 2, usage: "slmstore rollout NAME@VERSION STAGE --percent P")
    let store = try ctx.openStore()
    let stage = a.positionals[1]
    let record: RolloutRecord
    if a.has("--halt") {
        guard a.value("--percent") == nil else { throw SLMError.argument("rollout: --halt and --percent do not go together") }
        record = try store.haltRollout(try ModelName(a.positionals[0]), stage: stage, reason: a.value("--reason"))
    } else {
        guard let text = a.value("--percent"), let p = Double(text), p > 0, p <= 100 else {
            throw SLMError.argument("rollout: --percent P is required, a number more than 0 and at most 100 (or --halt)")
        }
        var options = PromoteOptions()
        options.skipStaging = a.has("--skip-staging")
        options.allowBreaking = a.has("--allow-breaking")
        options.reason = a.value("--reason")
        var halt: Double? = nil
        if let h = a.value("--halt-on-failure") {
            guard let t = Double(h.hasSuffix("%") ? String(h.dropLast()) : h), t >= 0, t < 100 else {
                throw SLMError.argument("rollout: --halt-on-failure \"\(h)\" must be a percent from 0 to below 100, e.g. 5%")
            }
            halt = t
        }
        let minDevices = try a.value("--min-devices").map { m -> Int in
            guard let n = Int(m), n >= 1, n <= 1_000_000 else { throw SLMError.argument("rollout: --min-devices must be a whole number from 1") }
            return n
        } ?? 10
        let advanceAfter = try a.value("--advance-after").map { d -> Int in
            let seconds = try parseDuration(d, option: "rollout: --advance-after")
            guard seconds >= 1, seconds <= Double(RolloutRecord.maxAdvanceAfter) else {
                throw SLMError.argument("rollout: --advance-after \"\(d)\" must be from 1s to 3650d")
            }
            return Int(seconds)
        }
        let advanceStep = try a.value("--advance-step").map { t -> Double in
            guard let v = Double(t.hasSuffix("%") ? String(t.dropLast()) : t), v > 0, v <= 100 else {
                throw SLMError.argument("rollout: --advance-step \"\(t)\" must be a percent above 0, at most 100, e.g. 20%")
            }
            return v
        }
        if advanceAfter == nil && advanceStep != nil { throw SLMError.argument("rollout: --advance-step goes with --advance-after") }
        if halt == nil && advanceAfter == nil && a.value("--min-devices") != nil {
            throw SLMError.argument("rollout: --min-devices goes with --halt-on-failure or --advance-after")
        }
        record = try store.startRollout(try store.resolve(a.positionals[0]), stage: stage, percent: p,
                                        resetRejections: a.has("--reset-rejections"), haltOnFailure: halt, minDevices: minDevices,
                                        advanceAfter: advanceAfter, advanceStep: advanceStep, options: options)
    }
    let name = a.positionals[0].split(separator: "@").first.map(String.init) ?? a.positionals[0]
    if a.has("--json") {
        Output.json(.object(["name": .string(name), "stage": .string(stage), "version": .string(record.version),
                             "percent": .double(record.percent), "state": .string(record.state.rawValue), "serial": .int(record.serial)]))
    } else {
        switch record.state {
        case .active: print("\(name)@\(stage): \(record.version) for \(RolloutFormat.percent(record.percent))% of devices")
        case .completed: print("\(name)@\(stage): \(record.version) for every device (rollout complete)")
        case .halted: print("\(name)@\(stage): rollout of \(record.version) halted; devices return to the stage's version")
        }
    }
    return 0
}
