// Commands that ship versions and keep the store lean: diff, push, pull, rm, gc, maintenance.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

let deliveryCommands: [Command] = [diffCommand, pushCommand, pullCommand, rmCommand, gcCommand, maintenanceCommand]

let diffCommand = Command(
    name: "diff", summary: "What changed between two versions and what the update costs to ship",
    usage: "slmstore diff OLD NEW [--no-delta] [--json]",
    details: """
    Per file: unchanged, changed, added, removed; per safetensors file the tensors whose bytes,
    dtype or shape changed, and header-only (metadata) changes. Totals: chunks and bytes a holder
    of OLD must fetch to have NEW (exactly what `pull` transfers for chunk data), counting delta
    records against OLD (this store's, or computed as `push` would write them), beside what a
    device holding nothing fetches.
      --no-delta   count full records only (what `pull --no-delta` fetches)
      --json   one object: chunks_to_fetch, bytes_to_fetch, delta_chunks, full_bytes_to_fetch,
               raw_bytes_to_fetch, total_raw_bytes, files[...]
    """,
    spec: OptionSpec(flags: ["--json", "--no-delta"])
) { a, ctx in
    try requirePositionals(a, "diff", min: 2, max: 2, usage: "slmstore diff OLD NEW")
    let store = try ctx.openStore()
    let old = try store.resolve(a.positionals[0])
    let new = try store.resolve(a.positionals[1])
    let index = try store.loadChunkIndex()
    let d = try store.diff(from: try store.readTree(old.object.tree), to: try store.readTree(new.object.tree), index: index,
                           deltas: a.has("--no-delta") ? [:] : try store.deltaSizes(target: new, base: old, index: index))
    let share = d.totalRawBytes > 0 ? Double(d.rawBytesPresent) / Double(d.totalRawBytes) : 1
    if a.has("--json") {
        Output.json(.object([
            "from": .string("\(old.name)@\(old.version)"), "to": .string("\(new.name)@\(new.version)"),
            "chunks_to_fetch": .int(d.chunksToFetch), "bytes_to_fetch": .int(d.bytesToFetch),
            "delta_chunks": .int(d.deltaChunks), "full_bytes_to_fetch": .int(d.fullBytesToFetch),
            "raw_bytes_to_fetch": .int(d.rawBytesToFetch), "total_raw_bytes": .int(d.totalRawBytes),
            "already_present_share": .double((share * 10000).rounded() / 10000),
            "files": .array(d.files.map { f in
                .object(["path": .string(f.path), "status": .string(f.status.rawValue),
                         "old_size": f.oldSize.map { .int($0) } ?? .null, "new_size": f.newSize.map { .int($0) } ?? .null,
                         "header_changed": .bool(f.headerChanged), "metadata_only": .bool(f.metadataOnly),
                         "changed_tensors": .array(f.tensors.map { t in
                             .object(["name": .string(t.name), "change": .string(t.change), "bytes": .int(t.bytes), "detail": .string(t.detail)])
                         })])
            }),
        ]))
        return 0
    }
    print("\(old.name)@\(old.version) -> \(new.name)@\(new.version)")
    for f in d.files {
        switch f.status {
        case .unchanged: print("  unchanged  \(f.path)")
        case .added: print("  added      \(f.path) (\(Output.bytes(f.newSize ?? 0)))")
        case .removed: print("  removed    \(f.path)")
        case .changed:
            let note = f.metadataOnly ? " (header metadata only)" : f.headerChanged ? " (header changed)" : ""
            print("  changed    \(f.path)\(note)")
            for t in f.tensors {
                print("               \(t.change == "data" ? "changed" : t.change)  \(t.name)  \(Output.bytes(t.bytes))\(t.detail.isEmpty ? "" : "  " + t.detail)")
            }
        }
    }
    print("to fetch: \(Output.count(d.chunksToFetch, "chunk")), \(Output.bytes(d.bytesToFetch)) compressed (\(Output.bytes(d.rawBytesToFetch)) raw) of \(Output.bytes(d.totalRawBytes)); \(Output.fixed(share * 100, 1))% already present")
    if d.deltaChunks > 0 { print("  \(d.deltaChunks) of those chunks as deltas against \(old.name)@\(old.version)") }
    print("a device holding nothing fetches \(Output.bytes(d.fullBytesToFetch))")
    return 0
}

let pushCommand = Command(
    name: "push", summary: "Publish local versions into a store directory or an S3 bucket",
    usage: "slmstore push REMOTE [REF...] [--endpoint URL] [--json]",
    details: """
    REMOTE is a directory or s3://BUCKET/PREFIX. Copies what the destination lacks (packs, trees,
    versions), then creates version refs, writes the pushed models' manifest entries files
    (manifests/) and replaces manifest.json last, with compare-and-swap writes, so concurrent
    publishers all end up listed. Without REFs every version is pushed; dependencies come
    along. Stage refs and registry records of the pushed models are published
    too. A directory can then be served by any static web server.
    S3 credentials and settings come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    AWS_SESSION_TOKEN, AWS_PROFILE with ~/.aws/credentials and ~/.aws/config, AWS_REGION; large
    packs go up as multipart uploads that resume after an interruption.
      --endpoint URL   an S3-compatible endpoint (MinIO, Ceph, R2, ...); also AWS_ENDPOINT_URL
    Delta sets (Format.md §7.3) are written for each version pushed, against its parent, against
    every version holding a stage on the destination, and against --delta-from versions, so a
    device one or two releases behind downloads deltas instead of full chunks.
      --endpoint URL   an S3-compatible endpoint (MinIO, Ceph, R2, ...); also AWS_ENDPOINT_URL
      --delta-from REF also write deltas against this version (repeatable)
      --deltas-for-fleet  also write deltas against every version a device reports running
                       (the destination's reports/, see `sync --help`), so a device several
                       releases behind downloads deltas too
      --no-delta       write no delta sets
      --no-web         do not write the registry pages (web/index.html and a page per model and version)
      --sign KEY       write signed release metadata (release.json): every version this store or
                       the previous release vouches for, every stage, a serial one above the
                       last, an expiry (repeatable: every key signs)
      --expires D      how long the release is valid, e.g. 30d (default), 12h
      --next-key PUB   key that signs from the next serial on (rotation; repeatable)
      --previous-key PUB  a key whose signature on the remote's current release.json is trusted too
                       (the key rotated away from, when another machine signed last)
      --from-scratch   ignore the remote's release.json (unreadable or not signed by these keys):
                       sign only versions this store holds, with a serial above this store's record
      --remote-id ID   the id a remote that has none is given (default: random); releases name it
                       and devices pin it, so a release copied to another remote is refused
      \(tlsHelp)
      --json           pushed, already_present, chunks_copied, bytes_copied, delta_sets, delta_bytes, bytes_sent, requests, pages,
                       pack_indexes_searched
    """,
    spec: OptionSpec(values: Set(["--endpoint", "--delta-from", "--sign", "--expires", "--next-key", "--previous-key", "--remote-id"]).union(tlsOptionNames),
                     repeatable: ["--delta-from", "--sign", "--next-key", "--previous-key"],
                     flags: ["--json", "--no-web", "--no-delta", "--from-scratch", "--deltas-for-fleet"])
) { a, ctx in
    try requirePositionals(a, "push", min: 1, max: Int.max, usage: "slmstore push REMOTE [REF...] (REMOTE: a directory or s3://BUCKET/PREFIX)")
    let dest = a.positionals[0]
    if dest.hasPrefix("http://") || dest.hasPrefix("https://") {
        throw SLMError.argument("push: \(dest): push writes to a directory; publish that directory with your web server or bucket tool")
    }
    var remoteOptions = cliRemoteOptions()
    remoteOptions.endpoint = a.value("--endpoint")
    // Tests shrink multipart parts to exercise resumption on small packs.
    if let v = getenv("SLMSTORE_S3_PART_SIZE").map({ String(cString: $0) }), let n = Int(v) { remoteOptions.s3PartSize = n }
    remoteOptions.tls = tlsFiles(a)
    let destination = try Remotes.openWritable(dest, options: remoteOptions, for: "push")
    let store = try ctx.openStore()
    let refs = try a.positionals.dropFirst().map { try VersionRef.parse($0) }
    let bar = ProgressBar("push")
    var options = PushOptions()
    options.progress = bar.callback
    options.pages = a.has("--no-web") ? nil : RegistryPages()
    options.deltas = !a.has("--no-delta")
    options.deltaFrom = try a.all("--delta-from").map { try VersionRef.parse($0) }
    if options.deltas == false && !options.deltaFrom.isEmpty { throw SLMError.argument("push: --delta-from and --no-delta contradict each other") }
    options.deltasForFleet = a.has("--deltas-for-fleet")
    if options.deltas == false && options.deltasForFleet { throw SLMError.argument("push: --deltas-for-fleet and --no-delta contradict each other") }
    options.signing = try signingOptions(a, command: "push")
    if let id = a.value("--remote-id") {
        guard SignedRelease.isValidRemoteID(id) else { throw SLMError.argument("push: --remote-id \"\(id)\" must be 1 to 64 characters of A-Z a-z 0-9 . _ -") }
        options.remoteID = id
    }
    let r = try store.push(to: destination, refs: refs, options: options)
    bar.finish()
    if a.has("--json") {
        Output.json(.object(["pushed": .array(r.versionsPushed.map { .string($0) }), "already_present": .array(r.versionsPresent.map { .string($0) }),
                             "chunks_copied": .int(r.chunksCopied), "bytes_copied": .int(r.bytesCopied),
                             "delta_sets": .array(r.deltaSets.map { .string($0) }), "delta_bytes": .int(r.deltaBytes),
                             "bytes_sent": .int(r.bytesSent), "requests": .int(r.requests), "pages": .int(r.pagesWritten),
                             "pack_indexes_searched": .int(r.packIndexesSearched),
                             "stages": .array(r.stagesPushed.map { .string($0) }), "seconds": .double((r.seconds * 1000).rounded() / 1000),
                             "release": r.release.map(releaseJSON) ?? .null,
                             "warnings": .array(r.warnings.map { .string(message(for: $0)) })]))
    } else {
        print("pushed \(Output.count(r.versionsPushed.count, "version")) (\(r.versionsPresent.count) already there), \(Output.count(r.chunksCopied, "chunk")), \(Output.bytes(r.bytesCopied)) to \(dest)")
        for v in r.versionsPushed { print("  \(v)") }
        for s in r.stagesPushed { print("  stage \(s)") }
        for d in r.deltaSets { print("  deltas \(d)") }
        if !r.deltaSets.isEmpty { print("  \(Output.bytes(r.deltaBytes)) of delta records") }
        if let release = r.release { printRelease(release, json: false, remote: dest) }
    }
    for w in r.warnings { Output.warning(message(for: w)) }
    if a.has("--json"), let release = r.release {
        for o in release.overridden { Output.warning("\(dest): not signed as the remote states it: \(o)") }
    }
    return 0
}

let pullCommand = Command(
    name: "pull", summary: "Fetch a version from a remote, only the missing chunks; optionally install it",
    usage: "slmstore pull REMOTE REF [--to DIR] [--keep N] [--seed DIR]... [--max-rate RATE] [--endpoint URL] [--json]",
    details: """
    REMOTE is a store directory, an http(s):// URL of one served by any static server that honors
    Range requests, or s3://BUCKET/PREFIX (credentials as for push; --endpoint URL for
    S3-compatible services). REF is NAME@VERSION, NAME@STAGE, NAME@RANGE, NAME@latest or a version id.
    Only chunks the local store lacks are fetched, in coalesced range requests, verified as they
    arrive. Interrupted pulls resume without re-downloading what was stored.
      --to DIR        install as DIR/<version>/ and flip DIR/current atomically
      --force         install into a DIR that holds files slmstore did not put there (refused
                      otherwise, before anything is downloaded)
      --keep N        installed versions to keep besides the current one (default 1)
      --seed DIR      reuse chunks from files in DIR (DIR/current is used automatically)
      --max-rate R    limit download rate, e.g. 10M (bytes per second, K/M/G suffixes)
      --memory-budget B   the peak memory to size buffers and parallel requests for
                      (default 64M; at least 32M). More buys larger ranges and install
                      batches; less, fewer requests in flight.
      --parallel N    range requests in flight (1-32; default from the memory budget, 4)
      --no-delta      fetch full records only (by default a chunk comes as a delta record when
                      the remote has one against a version this store holds and it is smaller)
      --trust PUB     install only versions that release metadata signed by this Ed25519 key
                      lists (repeatable; also SLMSTORE_TRUST=FILE:FILE). Refuses a release that is
                      expired, has a lower serial than one accepted before, or is unsigned once a
                      signed one was accepted from this remote (exit 8).
      --max-install-size S  refuse, before downloading, a version whose files (with its
                      dependencies) add up to more than S, e.g. 8G. Whatever the size, a pull
                      refuses to download or install what would leave less than 5% of the disk
                      (at most 256 MiB) free.
      --max-expansion N  refuse, before downloading, a version whose new data (what its files
                      take from chunks this store lacks) is more than N times the bytes it
                      downloads: a remote listing one tiny record thousands of times (default
                      1024; 0: no limit)
      --token-file F  private http(s) remote: send the token in F as Authorization: Bearer
                      (also SLMSTORE_TOKEN); otherwise a user:password in the URL, else the
                      host's entry in ~/.netrc (--netrc-file F). Never printed or stored.
      \(tlsHelp)
      --report        with --to: leave a device report, as `sync` does after a round (installed,
                      or failed with its error class; bytes fetched), in REMOTE's reports/ when
                      writable, else by PUT to --report-url URL; the device id is --device-id or
                      DIR/.slmstore-device-id (made once). A report that cannot go is a warning.
      --json          bytes_downloaded, requests, chunks_fetched, chunks_from_deltas, ...
    """,
    spec: OptionSpec(values: Set(["--to", "--keep", "--seed", "--max-rate", "--parallel", "--endpoint", "--memory-budget", "--trust",
                              "--token-file", "--netrc-file", "--max-install-size", "--max-expansion", "--report-url", "--device-id"]).union(tlsOptionNames),
                     repeatable: ["--seed", "--trust"], flags: ["--json", "--no-delta", "--report", "--force"])
) { a, ctx in
    try requirePositionals(a, "pull", min: 2, max: 2, usage: "slmstore pull REMOTE REF")
    var options = PullOptions()
    options.installDirectory = a.value("--to")
    options.installIntoForeignDirectory = a.has("--force")
    if let k = a.value("--keep") {
        guard let n = Int(k), n >= 0 else { throw SLMError.argument("pull: --keep must be a number >= 0, not \"\(k)\"") }
        options.keep = n
    }
    options.seeds = a.all("--seed")
    options.useDeltas = !a.has("--no-delta")
    options.trustedKeys = try trustedKeys(a)
    if let m = a.value("--max-install-size") { options.maxInstallSize = try parseSize(m, option: "--max-install-size") }
    if let x = a.value("--max-expansion") { options.maxExpansion = try parseExpansion(x) }
    if let b = a.value("--memory-budget") { options.applyMemoryBudget(try parseSize(b, option: "--memory-budget")) }
    if let p = a.value("--parallel") {
        guard let n = Int(p), (1...32).contains(n) else { throw SLMError.argument("pull: --parallel must be 1 to 32") }
        options.parallelRequests = n
    }
    let rate = try a.value("--max-rate").map { try parseRate($0, option: "--max-rate") } ?? 0
    var remoteOptions = cliRemoteOptions()
    remoteOptions.maxBytesPerSecond = rate
    remoteOptions.endpoint = a.value("--endpoint")
    remoteOptions.credentials.tokenFile = a.value("--token-file")
    remoteOptions.credentials.netrcFile = a.value("--netrc-file")
    remoteOptions.tls = tlsFiles(a)
    // Ctrl-C (or SIGTERM) stops the pull between writes: what was verified stays for the next run.
    let interrupt = Interrupt.catchSignals()
    remoteOptions.isCancelled = { interrupt.isSet }
    options.isCancelled = { interrupt.isSet }
    let remote = try Remotes.open(a.positionals[0], options: remoteOptions)
    // Tests shrink the commit batch to exercise resume on small models.
    if let v = getenv("SLMSTORE_PULL_COMMIT_BYTES").map({ String(cString: $0) }), let n = UInt64(v), n > 0 { options.commitEvery = n }
    // And the planning window, to kill a pull between windows.
    if let v = getenv("SLMSTORE_PULL_WINDOW_CHUNKS").map({ String(cString: $0) }), let n = Int(v), n > 0 { options.planWindowChunks = n }
    let ref = try VersionRef.parse(a.positionals[1])
    let store = try ctx.openStore(create: true)
    let bar = ProgressBar("pull")
    options.progress = bar.callback
    options.log = { Output.note($0) }
    // --report: what the device ended on, sent whether the pull worked or not.
    let reporter = try pullReporter(a, remote: remote, remoteOptions: remoteOptions, ref: ref, installDirectory: options.installDirectory)
    let r: PullResult
    do {
        r = try store.pull(from: remote, ref: ref, options: options)
    } catch {
        reporter?(nil, error)
        throw error
    }
    bar.finish()
    reporter?(r, nil)
    printPull(r, json: a.has("--json"), installDirectory: options.installDirectory)
    return 0
}

let gcCommand = Command(
    name: "gc", summary: "Remove chunks no version needs; rewrite mostly-dead packs",
    usage: "slmstore gc [--rewrite-below F] [--json]",
    details: """
    Waits for running adds and pulls (it takes the store's data lock exclusively). Crash-safe at every step.
      --rewrite-below F   rewrite a pack (copying its live chunks into a new one) when less than this
                          share of its bytes is live: 0 never rewrites, 1 rewrites every pack holding
                          any dead chunk (default 0.5; packs with nothing live are always deleted)
      --json              bytes_freed, packs_before, packs_deleted, packs_rewritten, live_chunks
    """,
    spec: OptionSpec(values: ["--rewrite-below"], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "gc", min: 0, max: 0, usage: "slmstore gc")
    var threshold = 0.5
    if let t = a.value("--rewrite-below") {
        guard let v = Double(t), v >= 0, v <= 1 else { throw SLMError.argument("gc: --rewrite-below must be a number from 0 to 1, not \"\(t)\"") }
        threshold = v
    }
    let store = try ctx.openStore()
    // Test knob: a tiny budget splits even a small store's live set into ranges.
    var budget = Store.gcLiveSetBudget
    if let v = getenv("SLMSTORE_GC_LIVE_BUDGET").map({ String(cString: $0) }), let n = Int(v), n > 0 { budget = n }
    let r = try store.gc(rewriteBelow: threshold, liveSetBudget: budget)
    try store.removeReplacedManifestEntries()
    if a.has("--json") {
        Output.json(.object(["bytes_freed": .int(r.bytesFreed), "packs_before": .int(r.packsBefore), "packs_deleted": .int(r.packsDeleted),
                             "packs_rewritten": .int(r.packsRewritten), "live_chunks": .int(r.liveChunks)]))
    } else {
        print("freed \(Output.bytes(r.bytesFreed)): \(Output.count(r.packsDeleted, "pack")) deleted, \(r.packsRewritten) rewritten of \(r.packsBefore); \(r.liveChunks) live chunks")
    }
    return 0
}

let maintenanceCommand = Command(
    name: "maintenance", summary: "Rewrite the multi-pack index so lookups stay fast in a large store",
    usage: "slmstore maintenance [--json]",
    details: """
    Merges every pack index into packs/multi-pack-index (Format.md §6.1), which commands search
    with one small read per lookup instead of reading each pack index into memory. add, pull and gc do this
    on their own once \(Store.uncoveredPackLimit) packs are outside it; run it by hand after copying packs in.
    Runs beside adds and pulls (their new packs are covered next time).
      --json   packs, entries, bytes, packs_outside_before, seconds
    """,
    spec: OptionSpec(values: [], flags: ["--json"])
) { a, ctx in
    try requirePositionals(a, "maintenance", min: 0, max: 0, usage: "slmstore maintenance")
    let store = try ctx.openStore()
    let r = try store.maintenance()
    if a.has("--json") {
        Output.json(.object(["packs": .int(r.packs), "entries": .int(r.entries), "bytes": .int(r.bytes),
                             "packs_outside_before": .int(r.uncoveredBefore), "seconds": .double(r.seconds)]))
    } else if r.packs == 0 {
        print("no packs: nothing to index")
    } else {
        print("multi-pack index: \(r.entries) chunk records in \(Output.count(r.packs, "pack")) (\(Output.bytes(r.bytes))), \(Output.count(r.uncoveredBefore, "pack")) were outside it; \(String(format: "%.2f", r.seconds)) s")
    }
    return 0
}

/// "64M" -> 67_108_864 bytes (K, M, G are powers of 1024 here: memory, not bandwidth).
func parseSize(_ s: String, option: String) throws -> UInt64 {
    var text = s.uppercased()
    if text.hasSuffix("IB") { text.removeLast(2) } else if text.hasSuffix("B") { text.removeLast() }
    var mult: UInt64 = 1
    if let last = text.last, let m = ["K": UInt64(1) << 10, "M": UInt64(1) << 20, "G": UInt64(1) << 30][String(last)] { mult = m; text.removeLast() }
    guard let v = UInt64(text), v > 0 else { throw SLMError.argument("\(option): \"\(s)\" is not a size like 64M or 1G") }
    return v * mult
}

/// "10M" -> 10_000_000 bytes per second.
func parseRate(_ s: String, option: String) throws -> Double {
    var text = s.uppercased()
    var mult = 1.0
    if text.hasSuffix("/S") { text.removeLast(2) }
    if text.hasSuffix("B") { text.removeLast() }
    if let last = text.last, let m = ["K": 1e3, "M": 1e6, "G": 1e9][String(last)] { mult = m; text.removeLast() }
    guard let v = Double(text), v > 0 else { throw SLMError.argument("\(option): \"\(s)\" is not a rate like 500K or 10M") }
    return v * mult
}

let rmCommand = Command(
    name: "rm", summary: "Remove a version (its chunks are freed by the next gc)",
    usage: "slmstore rm REF [--force] [--json]",
    details: """
    Refused while the version holds a stage or another version depends on it (--depends).
      --force  remove it although other versions name it as their parent or are stored as deltas
               against it (listed otherwise): they keep working (gc keeps the base chunks they
               need, push and pull are unchanged) and keep naming it as their parent
      --json   removed, version_id
    """,
    spec: OptionSpec(flags: ["--json", "--force"])
) { a, ctx in
    try requirePositionals(a, "rm", min: 1, max: 1, usage: "slmstore rm REF")
    let store = try ctx.openStore()
    let r = try store.resolve(a.positionals[0])
    let dependants = try store.dependants(of: r)
    if !dependants.isEmpty && !a.has("--force") {
        throw SLMError.conflict("rm: \(r.name)@\(r.version) is named by \(dependants.joined(separator: ", ")); nothing was removed")
            .remedied(by: .removeAnyway)
    }
    try store.removeVersion(r)
    if a.has("--json") {
        Output.json(.object(["removed": .string("\(r.name)@\(r.version)"), "version_id": .string(r.id.hex)]))
    } else {
        print("removed \(r.name)@\(r.version) (\(r.id.hex.prefix(12))); run `slmstore gc` to free its chunks")
    }
    return 0
}

/// `pull --report`: a closure that sends the device's report of how the pull ended (nil without
/// --report; --report-url and --device-id need it, and it needs --to).
func pullReporter(_ a: ParsedArguments, remote: any ReadableBackend, remoteOptions: Remotes.Options, ref: VersionRef,
                  installDirectory: String?) throws -> ((PullResult?, Error?) -> Void)? {
    guard a.has("--report") || a.value("--report-url") != nil || a.value("--device-id") != nil else { return nil }
    guard a.has("--report"), let to = installDirectory else {
        throw SLMError.argument("pull: --report-url and --device-id go with --report, and --report with --to DIR")
    }
    let device = try DeviceIdentity.resolve(root: to, explicit: a.value("--device-id"))
    var sink = ReportSink(remote: remote, reportURL: a.value("--report-url"))
    (sink.tls, sink.credentials, sink.remoteURL) = (remoteOptions.tls, remoteOptions.credentials, a.positionals[0])
    sink.signer = try ReportSigner(root: to)
    return { result, failure in
        let model: String, target: String?
        switch (result, ref) {
        case let (r?, _): (model, target) = (r.name.value, r.version.description)
        case let (nil, .exact(n, v)): (model, target) = (n.value, v.description)
        case let (nil, .selector(n, _)): (model, target) = (n.value, nil)
        case (nil, .id): return   // no model to report on
        }
        var entry = DeviceReport.Model(installed: InstallDirectory(root: to).current(), target: target, state: .installed,
                                       bytesFetched: result?.bytesDownloaded ?? 0)
        if let failure { (entry.state, entry.errorClass) = (.failed, DeviceReport.errorClass(failure)) }
        do {
            if try !sink.send(DeviceReport(device: device, time: Timestamp.now(), models: [model: entry])) {
                Output.warning("no device report sent: \(remote.location) is read-only here; give --report-url URL")
            }
        } catch {
            Output.warning("the device report was not sent: \((error as? SLMError).map(message(for:)) ?? "\(error)")")
        }
    }
}

/// What a pull did, for people or as JSON.
func printPull(_ r: PullResult, json: Bool, installDirectory: String?) {
    if json {
        Output.json(.object([
            "name": .string(r.name.value), "version": .string(r.version.description), "version_id": .string(r.versionID.hex),
            "bytes_downloaded": .int(r.bytesDownloaded), "requests": .int(r.requests), "chunks_fetched": .int(r.chunksFetched),
            "chunk_bytes": .int(r.chunkBytes), "range_bytes": .int(r.rangeBytes), "metadata_bytes": .int(r.metadataBytes),
            "chunks_from_seeds": .int(r.chunksFromSeeds), "chunks_from_deltas": .int(r.chunksFromDeltas), "versions": .array(r.versions.map { .string($0) }),
            "installed": r.installedPath.map { .string($0) } ?? .null, "seconds": .double((r.seconds * 1000).rounded() / 1000),
            "download_seconds": .double((r.downloadSeconds * 1000).rounded() / 1000),
        ]))
    } else {
        // The rate over the download, as the progress bar showed it; the install's time apart.
        let install = r.installedPath != nil && r.seconds - r.downloadSeconds >= 0.01 ? ", \(Output.fixed(r.seconds, 2)) s with the install" : ""
        print("pulled \(r.name)@\(r.version) (\(r.versionID.hex.prefix(12))): \(Output.count(r.chunksFetched, "chunk")) fetched, \(Output.bytes(r.bytesDownloaded)) downloaded in \(Output.count(r.requests, "request")), \(Output.fixed(r.downloadSeconds, 2)) s (\(Output.rate(r.bytesDownloaded, r.downloadSeconds)))\(install)")
        if r.chunksFromSeeds > 0 { print("  \(Output.count(r.chunksFromSeeds, "chunk")) reused from files on disk") }
        if r.chunksFromDeltas > 0 { print("  \(Output.count(r.chunksFromDeltas, "chunk")) rebuilt from deltas against a version already here") }
        if r.versions.count > 1 { print("  with dependencies: \(r.versions.dropFirst().joined(separator: ", "))") }
        if let p = r.installedPath { print("  installed at \(p); \(installDirectory!)/current -> \(r.version)") }
    }
}
