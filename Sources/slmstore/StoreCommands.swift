// Commands over one store: init, add, ls, show, log, checkout, cat, verify.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

let storeCommands: [Command] = [initCommand, addCommand, lsCommand, showCommand, logCommand, checkoutCommand, catCommand, verifyCommand]

let initCommand = Command(
    name: "init", summary: "Create a store (optional: any command that writes creates one)",
    usage: "slmstore init [DIR] [--compression-level N] [--json]",
    details: "Creates the store at DIR (or the --store / default location). An existing store is left as it is.\n  --compression-level N   zstd level for new chunks (default 3)",
    spec: OptionSpec(values: ["--compression-level"], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "init", min: 0, max: 1, usage: "slmstore init [DIR]")
    var context = ctx
    if let dir = a.positionals.first { context.explicitStore = dir }
    var config = StoreConfig()
    if let l = a.value("--compression-level") {
        guard let level = Int(l), (1...19).contains(level) else { throw SLMError.argument("init: --compression-level must be 1 to 19, not \"\(l)\"") }
        config.compressionLevel = level
    }
    let existed = FileSystem.exists(context.storePath + "/config")
    let store = try Store.create(at: context.storePath, config: config)
    if a.has("--json") {
        Output.json(.object(["store": .string(store.root), "created": .bool(!existed), "config": store.config.json]))
    } else {
        print(existed ? "store already exists at \(store.root)" : "initialized store at \(store.root)")
    }
    return 0
}

let addCommand = Command(
    name: "add", summary: "Store files or a directory as a new model version",
    usage: "slmstore add NAME@VERSION PATH... [--card FILE] [--depends NAME@RANGE]... [--delta-base REF | --no-delta] [--force] [--json]",
    details: """
    A directory contributes every file below it (paths relative to it); a file contributes itself
    under its base name. *.safetensors files are validated and chunked tensor by tensor.
    Adding an existing NAME@VERSION with the same content does nothing; with different content it is refused.
    New chunks of BF16/F16/F32 tensors whose name, dtype and shape match a tensor of the previous
    version are also stored as deltas against it (what a device holding that version downloads).
      --card FILE            model card (model_card.yaml or .json): provenance stored inside the version.
                             A Hugging Face cache snapshot (models--ORG--NAME/snapshots/REV/) is stored
                             as its files (not the links into blobs/), and the card gains
                             source: {hub, repository, revision} unless it has a source. The
                             repository folder (models--ORG--NAME) or its snapshots/ folder means
                             the snapshot refs/main names, or --revision's
      --revision REV         with a Hugging Face cache folder: the ref (branch, tag) or commit to add
      --depends NAME@RANGE   a model this version needs (repeatable); must resolve in this store
      --delta-base REF       make deltas against this version instead of the previous one
      --no-delta             store full records only
      --force                add a NAME@VERSION this store pushed and then removed (refused
                             otherwise: it gets another id, which that remote refuses)
      --json                 print one JSON object (version_id, input_bytes, stored_bytes, new_chunks, reused_chunks,
                             delta_chunks, delta_stored_bytes, ...)
    """,
    spec: OptionSpec(values: ["--card", "--depends", "--delta-base", "--revision"], repeatable: ["--depends"], flags: ["--json", "--no-delta", "--force"])
) { a, ctx in
    try requirePositionals(a, "add", min: 2, max: Int.max, usage: "slmstore add NAME@VERSION PATH...")
    guard case let .exact(name, version) = try VersionRef.parse(a.positionals[0]) else {
        throw SLMError.argument("add: \"\(a.positionals[0])\" is not NAME@VERSION with a SemVer version (e.g. intent-classifier@1.0.0)")
    }
    let paths = try addPaths(a)
    let inputs = try AddInputs.collect(paths)
    var options = AddOptions()
    if let card = a.value("--card") { options.card = try ModelCard.load(path: card) }
    // A Hugging Face cache snapshot records where it came from, unless the card says already.
    if let (repository, revision) = paths.lazy.compactMap(AddInputs.huggingFaceSnapshot).first,
       options.card?["source"] == nil {
        var card = options.card?.objectValue ?? [:]
        card["source"] = .object(["hub": .string("huggingface"), "repository": .string(repository), "revision": .string(revision)])
        options.card = .object(card)
    }
    for d in a.all("--depends") {
        guard let at = d.firstIndex(of: "@"), at != d.startIndex, d.index(after: at) != d.endIndex else {
            throw SLMError.argument("add: --depends \"\(d)\" must be NAME@RANGE, e.g. base-tokenizer@^1.0")
        }
        let depName = try ModelName(String(d[..<at]))
        options.dependencies.append(Dependency(name: depName.value, range: String(d[d.index(after: at)...])))
    }
    if a.has("--no-delta") {
        guard a.value("--delta-base") == nil else { throw SLMError.argument("add: --delta-base and --no-delta contradict each other") }
        options.deltas = false
    }
    if let b = a.value("--delta-base") { options.deltaBase = try VersionRef.parse(b) }
    options.reuseVersionNumber = a.has("--force")
    let store = try ctx.openStore(create: true)
    let bar = ProgressBar("adding")
    options.progress = bar.callback
    let r = try store.addVersion(name: name, version: version, inputs: inputs, options: options)
    bar.finish()
    let ratio = r.inputBytes > 0 ? Double(r.reusedBytes) / Double(r.inputBytes) : 0
    if a.has("--json") {
        Output.json(.object([
            "name": .string(name.value), "version": .string(version.description),
            "version_id": .string(r.versionID.hex), "tree_id": .string(r.treeID.hex),
            "files": .int(r.files), "input_bytes": .int(r.inputBytes), "stored_bytes": .int(r.storedBytes),
            "new_chunks": .int(r.newChunks), "reused_chunks": .int(r.reusedChunks), "reused_bytes": .int(r.reusedBytes),
            "dedup_ratio": .double((ratio * 10000).rounded() / 10000), "already_present": .bool(r.alreadyPresent),
            "seconds": .double((r.seconds * 1000).rounded() / 1000),
            "delta_chunks": .int(r.deltas.chunks), "delta_stored_bytes": .int(r.deltas.storedBytes),
            "delta_base": r.deltaBase.map(JSONValue.string) ?? .null,
        ]))
    } else if r.alreadyPresent {
        print("\(name)@\(version) is already stored with identical content (version \(r.versionID.hex.prefix(12))); nothing written")
    } else {
        print("added \(name)@\(version)  version \(r.versionID.hex)")
        print("  \(Output.count(r.files, "file")), \(Output.bytes(r.inputBytes)) in; \(Output.bytes(r.storedBytes)) new compressed bytes written")
        print("  chunks: \(r.newChunks) new, \(r.reusedChunks) reused (\(Output.fixed(ratio * 100, 1))% of input already stored)")
        if r.deltas.chunks > 0, let base = r.deltaBase {
            print("  deltas against \(base): \(Output.count(r.deltas.chunks, "chunk")), \(Output.bytes(r.deltas.storedBytes)) (what a holder of \(base) downloads for them)")
        }
        print("  \(Output.fixed(r.seconds, 2)) s, \(Output.rate(r.inputBytes, r.seconds))")
    }
    return 0
}

let lsCommand = Command(
    name: "ls", summary: "List models with their versions, sizes and stored bytes",
    usage: "slmstore ls [NAME] [--stage STAGE] [--json]",
    details: "  NAME            list only this model's versions\n  --stage STAGE   only versions holding this stage (production, staging, archived)\n  --json          machine-readable output",
    spec: OptionSpec(values: ["--stage"], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "ls", min: 0, max: 1, usage: "slmstore ls [NAME]")
    let store = try ctx.openStore()
    // Figures come from the store's cache; the chunk index is loaded only to compute a missing one.
    var loaded: ChunkIndex? = nil
    let index = { () throws -> ChunkIndex in
        if let loaded { return loaded }
        loaded = try store.loadChunkIndex()
        return loaded!
    }
    var models = try store.models()
    if let only = a.positionals.first {
        let n = try ModelName(only)
        guard models.contains(n) else { throw SLMError.notFound("unknown model \(n)") }
        models = [n]
    }
    let stageFilter = a.value("--stage")
    var rows: [[String]] = [["MODEL", "VERSION", "ID", "STAGES", "SIZE", "STORED", "NEW", "CREATED"]]
    var json: [JSONValue] = []
    for m in models {
        var modelVersions: [SHA256Digest] = []
        var versionsJSON: [JSONValue] = []
        let stages = try store.stageRefs(of: m)
        // A damaged record is named, and the rest of the listing still shows (verify fails on it).
        let (allRollouts, damagedRollouts) = store.readableRollouts(of: m)
        for e in damagedRollouts { Output.warning("\(message(for: e)) (shown without it; `slmstore verify` lists it)") }
        let rollouts = allRollouts.filter { $0.value.state == .active }
        let versions = try store.versions(of: m)
        // NEW is what a version cost beyond its parent: the bytes a holder of the parent lacks.
        let listings = try store.cachedListings(m, versions: versions.map(\.id), index: index)
        for ((v, id), listing) in zip(versions, listings) {
            var held = stages.filter { $0.1 == id }.map(\.0).sorted()
            // A version in a staged rollout shows the share of devices it holds the stage for.
            for (stage, r) in rollouts.sorted(by: { $0.key < $1.key }) where r.id == id { held.append("\(stage) \(RolloutFormat.percent(r.percent))%") }
            if let only = stageFilter, !held.contains(only) { continue }
            let s = listing.stats
            modelVersions.append(id)
            rows.append([m.value, v.description, String(id.hex.prefix(12)), held.isEmpty ? "-" : held.joined(separator: ","),
                         Output.bytes(s.rawBytes), Output.bytes(s.storedBytes), Output.bytes(s.newStoredBytes), listing.created])
            versionsJSON.append(.object(["version": .string(v.description), "version_id": .string(id.hex), "size": .int(s.rawBytes),
                                         "stages": .array(held.map { .string($0) }), "new_stored_bytes": .int(s.newStoredBytes),
                                         "stored_bytes": .int(s.storedBytes), "created": .string(listing.created)]))
        }
        if stageFilter != nil && versionsJSON.isEmpty { continue }
        guard a.has("--json") else { continue }
        let modelStored = try store.cachedModelStoredBytes(m, versions: modelVersions, index: index)
        json.append(.object(["name": .string(m.value), "versions": .array(versionsJSON), "stored_bytes": .int(modelStored),
                             "rollouts": .object(rollouts.mapValues { .object(["version": .string($0.version), "percent": .double($0.percent)]) })]))
    }
    if a.has("--json") {
        Output.json(.object(["models": .array(json)]))
    } else if models.isEmpty {
        print("no models in \(store.root) (add one with `slmstore add NAME@VERSION PATH`)")
    } else {
        print(Output.table(rows))
    }
    return 0
}

let showCommand = Command(
    name: "show", summary: "Show a version: id, files, tensors, chunk and dedup figures",
    usage: "slmstore show REF [--json]",
    details: "  REF      NAME@VERSION, NAME@STAGE, NAME alone (its latest version) or a version id (prefix of at least 8 hex digits)\n  --json   everything, including every file's ordered chunk list",
    spec: OptionSpec(flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "show", min: 1, max: 1, usage: "slmstore show REF")
    let store = try ctx.openStore()
    // A model's name alone means its latest version (a model of that name wins over an id prefix).
    var ref = a.positionals[0]
    if !ref.contains("@"), let name = ModelName(parsing: ref), try store.models().contains(name) { ref += "@latest" }
    let r = try store.resolve(ref)
    let tree = try store.readTree(r.object.tree)
    let index = try store.loadChunkIndex()
    var parentTree: TreeObject? = nil
    var parentLabel: String? = nil
    if let p = r.object.parent, let pv = try? store.readVersion(p) {
        parentTree = try? store.readTree(pv.tree)
        parentLabel = "\(pv.name)@\(pv.version)"
    }
    let s = try store.stats(of: tree, parentTree: parentTree, index: index)
    let stages = try store.stageRefs(of: r.name).filter { $0.1 == r.id }.map(\.0).sorted()
    var metrics: [String: JSONValue] = [:]
    do { metrics = try store.latestMetrics(r.name, r.version) } catch let e as SLMError where !e.isTransient {
        Output.warning("\(message(for: e)) (shown without metrics; `slmstore verify` lists it)")
    }
    let (allRollouts, damagedRollouts) = store.readableRollouts(of: r.name)
    for e in damagedRollouts { Output.warning("\(message(for: e)) (shown without it; `slmstore verify` lists it)") }
    let deps: [(String, String)] = r.object.dependencies.map { d in
        let resolved = ModelName(parsing: d.name).flatMap { try? store.resolveSelector(name: $0, selector: d.range).resolved }
        return ("\(d.name)@\(d.range)", resolved.map { "\($0.name)@\($0.version)" } ?? "unresolved")
    }
    let shown = ShownVersion(store: store, r: r, tree: tree, index: index, parentLabel: parentLabel, stats: s, stages: stages,
                             metrics: metrics, rollouts: allRollouts, deps: deps)
    if a.has("--json") { try showJSON(shown) } else { try printShow(shown) }
    return 0
}
let logCommand = Command(
    name: "log", summary: "List a model's versions, oldest to newest",
    usage: "slmstore log NAME [--json]",
    details: "Versions in the order they were added, with ids, dates and parents.",
    spec: OptionSpec(flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "log", min: 1, max: 1, usage: "slmstore log NAME")
    let name = try ModelName(a.positionals[0])
    let store = try ctx.openStore()
    let all = try store.versions(of: name)
    guard !all.isEmpty else { throw SLMError.notFound("unknown model \(name)") }
    var entries = try all.map { (v, id) in (v, id, try store.readVersion(id)) }
    entries.sort { ($0.2.created, $0.0) < ($1.2.created, $1.0) }
    let labels = Dictionary(entries.map { ($0.1, $0.0.description) }, uniquingKeysWith: { a, _ in a })
    if a.has("--json") {
        Output.json(.object(["name": .string(name.value), "versions": .array(entries.map { v, id, o in
            .object(["version": .string(v.description), "version_id": .string(id.hex), "created": .string(o.created),
                     "added_by": .string(o.addedBy), "parent": o.parent.map { .string($0.hex) } ?? .null,
                     "tree_id": .string(o.tree.hex)])
        })]))
        return 0
    }
    var rows = [["VERSION", "ID", "CREATED", "BY", "PARENT"]]
    for (v, id, o) in entries {
        rows.append([v.description, String(id.hex.prefix(12)), o.created, o.addedBy, o.parent.map { labels[$0] ?? String($0.hex.prefix(12)) } ?? "-"])
    }
    print(Output.table(rows))
    return 0
}

let checkoutCommand = Command(
    name: "checkout", summary: "Write a version's files into a directory, verified",
    usage: "slmstore checkout REF DIR [--force] [--json]",
    details: "DIR must not exist or be empty unless --force. Every file is verified against its SHA-256\nbefore it is renamed into place.",
    spec: OptionSpec(flags: ["--force", "--json"])
) { a, ctx in
    try requirePositionals(a, "checkout", min: 2, max: 2, usage: "slmstore checkout REF DIR")
    let store = try ctx.openStore()
    let r = try store.resolve(a.positionals[0])
    let tree = try store.readTree(r.object.tree)
    let bar = ProgressBar("checkout")
    let result = try store.checkout(tree: tree, versionLabel: "\(r.name)@\(r.version)", to: a.positionals[1],
                                    force: a.has("--force"), progress: bar.callback)
    bar.finish()
    if a.has("--json") {
        Output.json(.object(["version_id": .string(r.id.hex), "files": .int(result.files), "bytes": .int(result.bytes),
                             "seconds": .double((result.seconds * 1000).rounded() / 1000)]))
    } else {
        print("checked out \(r.name)@\(r.version) into \(a.positionals[1]): \(Output.count(result.files, "file")), \(Output.bytes(result.bytes)), \(Output.fixed(result.seconds, 2)) s (\(Output.rate(result.bytes, result.seconds)))")
    }
    return 0
}

let catCommand = Command(
    name: "cat", summary: "Write one file of a version to stdout",
    usage: "slmstore cat REF PATH",
    details: "Chunks are verified as they are read; the file's SHA-256 is checked at the end (exit 5 on mismatch).",
    spec: OptionSpec()
) { a, ctx in
    try requirePositionals(a, "cat", min: 2, max: 2, usage: "slmstore cat REF PATH")
    let store = try ctx.openStore()
    let r = try store.resolve(a.positionals[0])
    let tree = try store.readTree(r.object.tree)
    guard let entry = tree.file(a.positionals[1]) else {
        throw SLMError.notFound("\(r.name)@\(r.version) has no file \"\(a.positionals[1])\" (files: \(tree.files.map(\.path).joined(separator: ", ")))")
    }
    fflush(stdout)
    let index = try store.loadChunkIndex()
    try store.streamFile(entry, index: index, versionLabel: "\(r.name)@\(r.version)") { buf in
        var done = 0
        while done < buf.count {
            let n = write(1, buf.baseAddress! + done, buf.count - done)
            if n < 0 { if errno == EINTR { continue }; throw SLMError.io(path: "stdout", operation: "write", errno: errno) }
            done += n
        }
    }
    return 0
}

let verifyCommand = Command(
    name: "verify", summary: "Re-read every chunk and object; name every version damage reaches; repair from a remote",
    usage: "slmstore verify [--repair [REMOTE]] [--json]",
    details: """
    Exit status 0 when the store is sound, 5 when anything is damaged or missing.
      --repair [REMOTE]  take the damaged records out of the pack indexes (a chunk with a sound
                         copy in another pack reads from it), then, with REMOTE (a directory,
                         http(s):// or s3://), pull every version the damage reached from it again,
                         fetching only the chunks now missing, and verify once more. The store's
                         signed-release records for REMOTE are checked as by `pull`
      --endpoint URL     S3-compatible endpoint for an s3:// REMOTE
      \(tlsHelp)
      --json             ok, packs, chunks, chunk_bytes, versions, damaged_chunks, problems, hurt,
                         notes; with --repair also repaired {dropped_records, pulled, chunks_fetched,
                         bytes_downloaded}
    """,
    spec: OptionSpec(values: Set(["--endpoint"]).union(tlsOptionNames), flags: ["--json", "--repair"])
) { a, ctx in
    try requirePositionals(a, "verify", min: 0, max: a.has("--repair") ? 1 : 0, usage: "slmstore verify [--repair [REMOTE]]")
    let store = try ctx.openStore()
    let bar = ProgressBar("verify")
    var report = try store.verify(progress: bar.callback)
    bar.finish()
    var repaired: JSONValue = .null
    if a.has("--repair"), !report.ok {
        let dropped = try store.dropDamagedRecords(report.damagedRecords)
        var pulled: [String] = []
        var fetched = 0
        var downloaded: UInt64 = 0
        if let location = a.positionals.first {
            var remoteOptions = cliRemoteOptions()
            remoteOptions.endpoint = a.value("--endpoint")
            remoteOptions.tls = tlsFiles(a)
            let remote = try Remotes.open(location, options: remoteOptions)
            for label in Set(report.hurtVersions.map(\.version)).sorted() {
                let r = try store.pull(from: remote, ref: try VersionRef.parse(label), options: PullOptions())
                pulled.append(label)
                fetched += r.chunksFetched
                downloaded += r.bytesDownloaded
            }
        }
        if !a.has("--json") {
            print("repair: dropped \(dropped) damaged \(dropped == 1 ? "record" : "records") from the pack indexes" +
                  (pulled.isEmpty ? "" : "; pulled \(pulled.joined(separator: ", ")) again (\(fetched) chunks, \(Output.bytes(downloaded)))"))
        }
        repaired = .object(["dropped_records": .int(UInt64(dropped)), "pulled": .array(pulled.map { .string($0) }),
                            "chunks_fetched": .int(UInt64(fetched)), "bytes_downloaded": .int(downloaded)])
        report = try store.verify(progress: nil)
    }
    if a.has("--json") {
        Output.json(.object([
            "ok": .bool(report.ok), "packs": .int(report.packs), "chunks": .int(report.chunks), "chunk_bytes": .int(report.chunkBytes),
            "versions": .int(report.versions),
            "damaged_chunks": .array(report.damagedChunks.map { .string($0) }),
            "problems": .array(report.problems.map { .object(["path": .string($0.path), "message": .string($0.message)]) }),
            "hurt": .array(report.hurtVersions.map { .object(["version": .string($0.version), "file": .string($0.file),
                                                              "chunk": .string($0.chunk), "reason": .string($0.reason)]) }),
            "notes": .array(report.notes.map { .string($0) }),
            "repaired": repaired,
        ]))
    } else {
        for n in report.notes { print("note: \(n)") }
        for p in report.problems { print("damaged: \(p.path): \(p.message)") }
        var byVersion: [String: [String]] = [:]
        for h in report.hurtVersions { byVersion[h.version, default: []].append(h.file.isEmpty ? h.reason : "\(h.file) (\(h.reason) \(h.chunk.prefix(12)))") }
        for (v, files) in byVersion.sorted(by: { $0.key < $1.key }) {
            print("version \(v) is damaged: \(Array(Set(files)).sorted().joined(separator: ", "))")
        }
        print("\(report.ok ? "ok" : "FAILED"): \(Output.count(report.packs, "pack")), \(Output.count(report.chunks, "chunk")) (\(Output.bytes(report.chunkBytes))), \(Output.count(report.versions, "version")) checked")
        if !report.ok && !a.has("--repair") { print("to repair: `slmstore verify --repair REMOTE` with a remote that holds the damaged versions") }
    }
    return report.ok ? 0 : 5
}

/// What `show` gathered about one version, for its two renderings.
struct ShownVersion {
    let store: Store
    let r: ResolvedVersion
    let tree: TreeObject
    let index: ChunkIndex
    let parentLabel: String?
    let stats: VersionStats
    let stages: [String]
    let metrics: [String: JSONValue]
    let rollouts: [String: RolloutRecord]
    let deps: [(String, String)]
}

/// `show --json`: everything, every file's chunks with how each is stored.
func showJSON(_ v: ShownVersion) throws {
    let (store, r, tree, index, parentLabel, s, stages, metrics, allRollouts, deps) =
        (v.store, v.r, v.tree, v.index, v.parentLabel, v.stats, v.stages, v.metrics, v.rollouts, v.deps)
    let deltas = try store.deltaRecords(target: r.id)
    var baseLabels: [SHA256Digest: String] = [:]
    for records in deltas.values {
        for d in records where baseLabels[d.base] == nil {
            baseLabels[d.base] = (try? store.readVersion(d.base)).map { "\($0.name)@\($0.version)" } ?? d.base.hex
        }
    }
    let files: [JSONValue] = try tree.files.map { f in
        var o: [String: JSONValue] = [
            "path": .string(f.path), "size": .int(f.size), "sha256": .string(f.sha256.hex),
            "kind": .string(["plain", "safetensors", "gguf"][Int(f.kind.rawValue)]),
            "chunks": .array(try f.chunks.map { c in
                let loc = index.location(of: c.id)
                // How the chunk is stored: its full record, and any delta records (codec,
                // base version, base chunk ids and the offset into the first).
                return .object(["id": .string(c.id.hex), "raw_length": .int(c.rawLength),
                                "stored_length": loc.map { .int($0.storedLength) } ?? .null,
                                "codec": loc.map { .string($0.codec.name) } ?? .null,
                                "full_stored_length": store.fullStoredLength(of: c.id, index: index).map { .int($0) } ?? .null,
                                "deltas": .array((deltas[c.id] ?? []).map { d in
                                    .object(["codec": .string("delta"), "base_version": .string(baseLabels[d.base] ?? d.base.hex),
                                             "stored_length": .int(d.location.storedLength),
                                             "base_chunks": .array(d.header.bases.map { .string($0.id.hex) }),
                                             "base_offset": .int(d.header.baseOffset)])
                                })])
            }),
        ]
        if let st = f.safetensors {
            o["header_length"] = .int(st.headerLength)
            // Where tensor offsets start counting: 8 + header_length for safetensors, the data section for GGUF.
            o["data_start"] = .int(st.dataStart)
            o["tensors"] = .array(st.tensors.map { t in
                .object(["name": .string(t.name), "dtype": .string(t.dtype), "shape": .array(t.shape.map { .int($0) }),
                         "begin": .int(t.begin), "end": .int(t.end)])
            })
        }
        return .object(o)
    }
    Output.json(.object([
        "name": .string(r.name.value), "version": .string(r.version.description), "version_id": .string(r.id.hex),
        "tree_id": .string(r.object.tree.hex), "parent": r.object.parent.map { .string($0.hex) } ?? .null,
        "parent_version": parentLabel.map { .string($0) } ?? .null,
        "created": .string(r.object.created), "added_by": .string(r.object.addedBy), "tool": .string(r.object.tool),
        "card": r.object.card ?? .null,
        "dependencies": .array(zip(r.object.dependencies, deps).map { d, res in
            .object(["name": .string(d.name), "range": .string(d.range), "resolves_to": .string(res.1)])
        }),
        "stages": .array(stages.map { .string($0) }), "metrics": .object(metrics),
        "rollouts": .object(allRollouts.filter { $0.value.state == .active }.mapValues {
            .object(["version": .string($0.version), "percent": .double($0.percent)])
        }),
        "stats": .object(["files": .int(s.files), "raw_bytes": .int(s.rawBytes), "chunks": .int(s.chunks),
                          "unique_chunks": .int(s.uniqueChunks), "stored_bytes": .int(s.storedBytes),
                          "shared_with_parent": .int(s.sharedWithParent), "new_stored_bytes": .int(s.newStoredBytes)]),
        "files": .array(files),
    ]))
}

/// `show` for people.
func printShow(_ v: ShownVersion) throws {
    let (store, r, tree, parentLabel, s, stages, metrics, allRollouts, deps) =
        (v.store, v.r, v.tree, v.parentLabel, v.stats, v.stages, v.metrics, v.rollouts, v.deps)
    print("\(r.name)@\(r.version)")
    print("  version id   \(r.id.hex)")
    print("  tree id      \(r.object.tree.hex)")
    print("  parent       \(parentLabel.map { "\($0) (\(r.object.parent!.hex.prefix(12)))" } ?? "none")")
    print("  created      \(r.object.created) by \(r.object.addedBy) (\(r.object.tool))")
    print("  stage        \(stages.isEmpty ? "development" : stages.joined(separator: ", "))")
    for (stage, ro) in allRollouts.sorted(by: { $0.key < $1.key }) where ro.state == .active {
        let holder = try store.stageHolder(r.name, stage)?.0.description ?? "nothing"
        print("  rollout      \(stage): \(ro.version) for \(RolloutFormat.percent(ro.percent))% of devices, \(holder) for the rest")
    }
    if !deps.isEmpty {
        print("  depends on")
        // The whole dependency graph, as a tree; a version seen before is not expanded again.
        var seen = Set<SHA256Digest>()
        func walk(_ object: VersionObject, depth: Int) {
            for d in object.dependencies {
                let resolved = ModelName(parsing: d.name).flatMap { try? store.resolveSelector(name: $0, selector: d.range).resolved }
                let label = resolved.map { "\($0.name)@\($0.version)" } ?? "unresolved"
                print(String(repeating: "  ", count: depth + 2) + "\(d.name)@\(d.range) -> \(label)")
                if let r = resolved, seen.insert(r.id).inserted { walk(r.object, depth: depth + 1) }
            }
        }
        walk(r.object, depth: 0)
    }
    if !metrics.isEmpty {
        print("  metrics      " + metrics.keys.sorted().map { "\($0)=\(metrics[$0]!.canonicalString())" }.joined(separator: " "))
    }
    if let card = r.object.card {
        print("  card")
        for line in card.prettyString().split(separator: "\n") { print("    \(line)") }
    }
    let ratio = s.rawBytes > 0 ? Double(s.storedBytes) / Double(s.rawBytes) : 0
    print("  size         \(Output.bytes(s.rawBytes)) in \(Output.count(s.files, "file")); stored \(Output.bytes(s.storedBytes)) (\(Output.fixed(ratio, 3)) of raw)")
    print("  chunks       \(s.chunks) (\(s.uniqueChunks) distinct), \(s.sharedWithParent) shared with parent, \(Output.bytes(s.newStoredBytes)) new vs parent")
    print("\nFiles:")
    print(Output.table([["PATH", "SIZE", "CHUNKS", "SHA256"]] + tree.files.map {
        [$0.path, Output.bytes($0.size), String($0.chunks.count), $0.sha256.hex]
    }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    for f in tree.files {
        guard let st = f.safetensors else { continue }
        print("\nTensors in \(f.path) (\(st.tensors.count)):")
        print(Output.table([["NAME", "DTYPE", "SHAPE", "BYTES"]] + st.tensors.map {
            [$0.name, $0.dtype, "[" + $0.shape.map(String.init).joined(separator: ", ") + "]", Output.bytes($0.byteCount)]
        }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
    }
}

/// The paths `add` reads: a Hugging Face cache folder stands for one of its snapshots (refs/main
/// or --revision), never for the cache's own files.
func addPaths(_ a: ParsedArguments) throws -> [String] {
    var paths: [String] = []
    for p in a.positionals.dropFirst() { paths.append(try AddInputs.huggingFaceCacheSnapshot(p, revision: a.value("--revision")) ?? p) }
    if let r = a.value("--revision"), paths == Array(a.positionals.dropFirst()) {
        throw SLMError.argument("add: --revision \(r) goes with a Hugging Face cache folder (models--ORG--NAME or its snapshots/), and none was given")
    }
    return paths
}
