// `add`: turn files into chunks, compress the new ones into packs in a private working
// directory, then commit packs, tree, version and ref in that order under the refs lock.

import SLMFormats
import Foundation

/// One file to add: where it is read from and the path it gets in the tree.
public struct AddInput: Sendable {
    /// The file's path in the version's tree.
    public var treePath: String
    /// Where it is read from.
    public var sourcePath: String
    /// Its size when it was checked.
    public var size: UInt64
    /// Its tensor table, for a safetensors or GGUF file.
    public var safetensors: SafetensorsHeader?
}

/// What an `add` did.
public struct AddResult: Sendable {
    /// The model added to.
    public var name: ModelName
    /// The version added.
    public var version: SemVer
    /// The new version's id.
    public var versionID: SHA256Digest
    /// Its tree's id.
    public var treeID: SHA256Digest
    /// Bytes of the input files.
    public var inputBytes: UInt64
    /// New compressed bytes written into packs (payload and record headers).
    public var storedBytes: UInt64
    /// Chunks written for the first time.
    public var newChunks: Int
    /// Chunks the store held already.
    public var reusedChunks: Int
    /// Raw bytes of the input that were already stored (deduplicated).
    public var reusedBytes: UInt64
    /// Files in the version.
    public var files: Int
    /// True when the same version with the same content already existed (nothing written).
    public var alreadyPresent: Bool
    /// Wall time of the add.
    public var seconds: Double
    /// Delta records written against `deltaBase` (Format.md §5, codec 3).
    public var deltas = DeltaStats()
    /// The version deltas were made against (NAME@VERSION), if any.
    public var deltaBase: String?
}

/// How to add: provenance, dependencies, progress, pack size and deltas.
public struct AddOptions: Sendable {
    /// The model card recorded in the version object.
    public var card: JSONValue?
    /// Other models this version needs.
    public var dependencies: [Dependency] = []
    /// Called with (bytes processed, total bytes) as work advances.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    /// Packs are closed once they reach this size.
    public var packTargetSize: UInt64 = 256 << 20
    /// Bytes read per block (two are in memory at once); chunk boundaries do not depend on it.
    package var blockSize = ChunkIngester.blockSize
    /// Add a NAME@VERSION this store once pushed and no longer holds (it gets another id, which
    /// that remote refuses).
    public var reuseVersionNumber = false
    /// Write delta records against the parent version (or `deltaBase`) for float tensor chunks.
    public var deltas = true
    /// The version deltas are made against instead of the parent.
    public var deltaBase: VersionRef?

    /// The defaults: no card, no dependencies, deltas against the parent.
    public init() {}
}

/// Turning what a user names into checked `AddInput`s.
public enum AddInputs {
    /// Expands the user's arguments into files: a directory contributes every regular file below
    /// it (paths relative to it), a file contributes itself under its base name. Everything is
    /// checked (readable, safe path, valid safetensors) before the store is touched.
    public static func collect(_ arguments: [String]) throws -> [AddInput] {
        guard !arguments.isEmpty else { throw SLMError.argument("add: no files or directories given") }
        var inputs: [AddInput] = []
        var seen: [String: String] = [:]
        func addFile(_ source: String, _ treePath: String) throws {
            if let problem = TreePath.problem(treePath) {
                throw SLMError.input(path: source, problem: "cannot be stored as \"\(treePath)\": path is \(problem)")
            }
            if let other = seen[treePath] {
                throw SLMError.input(path: source, problem: "both this and \(other) would be stored as \"\(treePath)\"")
            }
            seen[treePath] = source
            guard access(source, R_OK) == 0 else { throw SLMError.input(path: source, problem: "not readable (\(String(cString: strerror(errno))))") }
            let file = try FileDescriptor.openForReading(source)
            let size = try file.size()
            let header = try SafetensorsHeader.read(weightsFile: source, treePath: treePath)
            inputs.append(AddInput(treePath: treePath, sourcePath: source, size: size, safetensors: header))
        }
        for arg in arguments {
            var st = stat()
            guard stat(arg, &st) == 0 else {
                throw SLMError.input(path: arg, problem: errno == ENOENT ? "no such file or directory" : String(cString: strerror(errno)))
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                try addFile(arg, FileSystem.basename(arg))
            case S_IFDIR:
                let before = inputs.count
                var visited = Set<String>()
                try walk(arg, "", &visited) { source, rel in try addFile(source, rel) }
                if inputs.count == before { throw SLMError.input(path: arg, problem: "directory holds no files") }
            default:
                throw SLMError.input(path: arg, problem: "not a regular file or directory")
            }
        }
        return inputs
    }

    /// The Hugging Face Hub repository and revision of a cache snapshot directory
    /// (`.../models--ORG--NAME/snapshots/<40 hex>`), whose files are links into `../../blobs`;
    /// `collect` stores the files they point to under the snapshot's names. Nil for other paths.
    public static func huggingFaceSnapshot(_ path: String) -> (repository: String, revision: String)? {
        let parts = FileSystem.absolutePath(path).split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[parts.count - 2] == "snapshots" else { return nil }
        let revision = parts[parts.count - 1], cache = parts[parts.count - 3]
        guard revision.count == 40, revision.allSatisfy(\.isHexDigit), cache.hasPrefix("models--") else { return nil }
        let repository = cache.dropFirst("models--".count).replacingOccurrences(of: "--", with: "/")
        guard !repository.isEmpty else { return nil }
        return (repository, revision)
    }

    /// The snapshot a Hugging Face cache path stands for: a repository folder
    /// (`models--ORG--NAME`, holding `refs/`, `snapshots/` and `blobs/`) or its `snapshots/`
    /// folder means the snapshot `refs/<revision>` names (`main` by default; a 40-hex commit is
    /// taken as is), so `add` stores the files of that snapshot and never the cache's internals.
    /// Nil for any other path (a snapshot directory itself included: it is used as it is).
    public static func huggingFaceCacheSnapshot(_ path: String, revision: String?) throws -> String? {
        let absolute = FileSystem.absolutePath(path)
        var repo = absolute
        while repo.hasSuffix("/") { repo.removeLast() }
        if FileSystem.basename(repo) == "snapshots" { repo = FileSystem.dirname(repo) }
        guard FileSystem.basename(repo).hasPrefix("models--"), FileSystem.isDirectory(repo + "/snapshots"),
              FileSystem.isDirectory(repo + "/refs") || revision != nil else { return nil }
        let wanted = revision ?? "main"
        var commit = wanted
        if !(wanted.count == 40 && wanted.allSatisfy(\.isHexDigit)) {
            let ref = "\(repo)/refs/\(wanted)"
            guard TreePath.problem(wanted) == nil, FileSystem.exists(ref) else {
                let known = ((try? FileSystem.listDirectory(repo + "/snapshots")) ?? []).sorted()
                throw SLMError.input(path: path, problem: "is a Hugging Face cache folder without refs/\(wanted); name a revision (one of: \(known.joined(separator: ", ")))")
                    .remedied(by: .chooseRevision)
            }
            commit = String(decoding: try FileSystem.readFile(ref, limit: 4096), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let snapshot = "\(repo)/snapshots/\(commit)"
        guard commit.count == 40, commit.allSatisfy(\.isHexDigit), FileSystem.isDirectory(snapshot) else {
            throw SLMError.input(path: path, problem: "revision \(wanted) names \(commit.prefix(64)), which has no snapshot in this cache")
        }
        return snapshot
    }

    /// Every readable regular file below `dir`, skipping what cannot be used (for seeds).
    public static func collectLenient(_ dir: String) throws -> [AddInput] {
        var out: [AddInput] = []
        var visited = Set<String>()
        try walk(dir, "", &visited) { source, rel in
            guard TreePath.problem(rel) == nil else { return }
            let size: UInt64, header: SafetensorsHeader?
            do {
                size = try FileDescriptor.openForReading(source).size()
                header = try SafetensorsHeader.read(weightsFile: source, treePath: rel)
            } catch {
                return  // a seed is a hint: a file that cannot be read or parsed is not one
            }
            out.append(AddInput(treePath: rel, sourcePath: source, size: size, safetensors: header))
        }
        return out
    }

    private static func walk(_ dir: String, _ prefix: String, _ visited: inout Set<String>,
                             _ body: (String, String) throws -> Void) throws {
        guard let real = realpath(dir, nil) else { throw SLMError.input(path: dir, problem: "cannot resolve directory") }
        let key = String(cString: real)
        free(real)
        guard visited.insert(key).inserted else { return }  // a symlink loop
        let names: [String]
        do { names = try FileSystem.listDirectory(dir) } catch { throw SLMError.input(path: dir, problem: "cannot list directory") }
        for name in names where name != ".git" {
            let path = "\(dir)/\(name)"
            let rel = prefix.isEmpty ? name : "\(prefix)/\(name)"
            var st = stat()
            guard stat(path, &st) == 0 else { throw SLMError.input(path: path, problem: "dangling link or unreadable entry") }
            switch st.st_mode & S_IFMT {
            case S_IFREG: try body(path, rel)
            case S_IFDIR: try walk(path, rel, &visited, body)
            default: throw SLMError.input(path: path, problem: "not a regular file or directory")
            }
        }
    }
}

extension Store {
    /// Refuses, before anything is read or written, inputs whose tree object could not be
    /// stored: its least possible size (every file cut into chunks of the largest size, plus
    /// paths and tensor tables, which are known) already passes `TreeObject.maxEncodedSize`.
    static func checkTreeFits(_ inputs: [AddInput], maxChunk: UInt64) throws {
        var total = 16
        var largest: (path: String, bytes: Int) = ("", 0)
        for input in inputs {
            var bytes = 2 + input.treePath.utf8.count + 8 + 32 + 1 + 4 + 20 * Int((input.size + maxChunk - 1) / max(1, maxChunk))
            if let st = input.safetensors {
                bytes += 12
                for t in st.tensors { bytes += 2 + t.name.utf8.count + 1 + t.dtype.utf8.count + 1 + 8 * t.shape.count + 16 }
            }
            total += bytes
            if bytes > largest.bytes { largest = (input.sourcePath, bytes) }
        }
        guard total <= TreeObject.maxEncodedSize else {
            throw SLMError.input(path: largest.path, problem: "the version would need a tree object of at least \(total) bytes (this file: \(largest.bytes), mostly its tensor table and chunk list), more than the \(TreeObject.maxEncodedSize) a store accepts; nothing was written")
        }
    }

    /// `version`, or when its chunks are stored as deltas against another version, that one
    /// (followed while it is itself a delta target, at most 64 steps). A version with no delta
    /// set of its own can still hold only delta records: it has the bytes of an earlier delta
    /// version (added again under a new number), so adding it wrote nothing. It is followed
    /// through the set of a version with the same tree; nil when neither leads to full records
    /// (a delta's base must be a full record, so such a base would yield no deltas at all).
    func fullyStoredAncestor(of version: ResolvedVersion, index: ChunkIndex) throws -> ResolvedVersion? {
        var current = version
        let sets = try deltaSets()
        func resolved(_ id: SHA256Digest) throws -> ResolvedVersion? {
            // A set naming a version this store no longer holds leads nowhere, which nil says; a
            // damaged one is an error like any other damaged object.
            guard hasObject(id) else { return nil }
            let object = try readVersion(id)
            guard let name = ModelName(parsing: object.name) else { return nil }
            return ResolvedVersion(name: name, version: object.version, id: id, object: object)
        }
        for _ in 0..<64 {
            if let set = sets.first(where: { $0.target == current.id }) {
                guard let base = try resolved(set.base) else { return nil }
                current = base
                continue
            }
            if try holdsFullWeights(current, index: index) { return current }
            var twin: ResolvedVersion? = nil
            for set in sets where set.target != current.id {
                guard let t = try resolved(set.target), t.object.tree == current.object.tree else { continue }
                if let base = try resolved(set.base) { twin = base; break }
            }
            guard let twin else { return nil }
            current = twin
        }
        return nil
    }

    /// Whether every chunk of `version`'s weight files is stored as a full record (a version
    /// whose tensors were stored as deltas keeps the header and tails in full, so all are asked).
    func holdsFullWeights(_ version: ResolvedVersion, index: ChunkIndex) throws -> Bool {
        let tree = try readTree(version.object.tree)
        for f in tree.files where f.safetensors != nil {
            if try f.chunks.contains(where: { !index.containsFull($0.id) }) { return false }
        }
        return true
    }

    /// The version deltas of a new `version` of `name` are made against: the newest earlier
    /// version that leads to full records (itself, or the base of its deltas).
    func defaultDeltaBase(name: ModelName, before version: SemVer, index: ChunkIndex) throws -> ResolvedVersion? {
        for p in try versions(of: name).filter({ $0.version < version }).reversed() {
            let candidate = ResolvedVersion(name: name, version: p.version, id: p.id, object: try readVersion(p.id))
            if let base = try fullyStoredAncestor(of: candidate, index: index) { return base }
        }
        return nil
    }

    /// The id of `name@version` when it already exists with exactly this tree, card and
    /// dependencies (adding it again is then a no-op); nil when it does not exist. Versions
    /// are immutable, so any other difference is a conflict.
    private func identicalExistingVersion(_ name: ModelName, _ version: SemVer, tree treeID: SHA256Digest, options: AddOptions) throws -> SHA256Digest? {
        guard let existingID = try readRef(at: versionRefPath(name, version)) else { return nil }
        let old = try readVersion(existingID)
        guard old.tree == treeID else {
            throw SLMError.conflict("\(name)@\(version) already exists with different content (version \(existingID.hex.prefix(12))); versions are immutable, add a new version instead")
        }
        guard old.card == options.card, old.dependencies == options.dependencies else {
            throw SLMError.conflict("\(name)@\(version) already exists with the same files but a different card or dependencies; versions are immutable")
        }
        return existingID
    }

    /// Adds `inputs` as `name@version`: chunks new to the store into packs (tensor deltas against
    /// the parent where they are smaller), then the tree and version objects, then the version ref.
    /// Adding the same content again is a no-op; other content under an existing version is a
    /// conflict.
    public func add(name: ModelName, version: SemVer, inputs: [AddInput], options: AddOptions = AddOptions()) throws -> AddResult {
        let started = Timestamp.monotonicSeconds()
        try Self.checkTreeFits(inputs, maxChunk: UInt64(config.chunker.maxSize))
        // A number this store pushed and then removed: the new version gets another id, and the
        // remote that holds the old one refuses it. Said before anything is written.
        if !options.reuseVersionNumber, !FileSystem.exists(versionRefPath(name, version)),
           let held = pushedElsewhere("\(name)@\(version)").first {
            throw SLMError.conflict("\(name)@\(version) is not in this store, but \(held.remote) holds it as \(held.id.hex.prefix(12)) (pushed from here); adding it again gives it another id, which that remote refuses")
                .remedied(by: .reuseVersionNumber)
        }
        let dataLock = try self.dataLock(.shared)
        defer { dataLock.unlock() }
        removeAbandonedWorkingDirectories()
        let work = try makeWorkingDirectory("add")
        defer { work.remove() }

        let existing = try loadChunkIndex()
        // The delta base: --delta-base, else the parent; a base itself stored as deltas is
        // replaced by the version its deltas are against (a delta's base must be a full record).
        var deltaBase: ResolvedVersion? = nil
        if options.deltas {
            if let ref = options.deltaBase {
                deltaBase = try resolve(ref)
            } else {
                deltaBase = try defaultDeltaBase(name: name, before: version, index: existing)
            }
        }
        let ingester = try ChunkIngester(store: self, existing: existing, directory: work.path,
                                     packTargetSize: options.packTargetSize, chunker: config.chunker,
                                     deltaBase: try deltaBase.map { try readTree($0.object.tree) }, blockSize: options.blockSize)
        let total = inputs.reduce(0) { $0 + $1.size }
        var entries: [FileEntry] = []
        for input in inputs {
            entries.append(try ingester.ingest(input) { done in options.progress?(done, total) })
        }
        let (packs, deltaPacks) = try ingester.finish()
        var deltaStats = DeltaStats()
        deltaStats.chunks = ingester.deltaChunks
        deltaStats.storedBytes = ingester.deltaStoredBytes
        let tree = TreeObject(files: entries)
        // The tree goes to a file in pieces (its chunk lists are read back from the ingester's
        // scratch file), so a model of any size is added without holding its tree.
        let treeFile = try FileDescriptor(path: "\(work.path)/tree", flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        let treeHasher = SHA256Hasher()
        var treeSize = 0
        try tree.encode { piece in
            treeSize += piece.count
            guard treeSize <= TreeObject.maxEncodedSize else { return }
            treeHasher.update(piece)
            try treeFile.write(piece)
        }
        // The estimate above counted as few chunks as the sizes allow; the real cut may still
        // pass the bound. Nothing is published then (the packs stay in the working directory).
        guard treeSize <= TreeObject.maxEncodedSize else {
            throw SLMError.input(path: inputs.first?.sourcePath ?? "", problem: "these files make a tree object of \(treeSize) bytes, more than the \(TreeObject.maxEncodedSize) a store accepts; store them as several versions or models")
        }
        let treeID = treeHasher.finish()

        let refs = try refsLock()
        defer { refs.unlock() }
        if let existingID = try identicalExistingVersion(name, version, tree: treeID, options: options) {
            return AddResult(name: name, version: version, versionID: existingID, treeID: treeID, inputBytes: total,
                             storedBytes: 0, newChunks: 0, reusedChunks: ingester.newChunks + ingester.reusedChunks,
                             reusedBytes: total, files: entries.count, alreadyPresent: true, seconds: Timestamp.monotonicSeconds() - started)
        }
        let parent = try versions(of: name).last { $0.version < version }?.id
        let object = VersionObject(name: name.value, version: version, tree: treeID, parent: parent,
                                   created: Timestamp.now(), addedBy: Identity.current(), tool: SLMStoreVersion.tool,
                                   card: options.card, dependencies: options.dependencies)
        // Commit order: packs (pack before index), objects, then the ref. A crash at any point
        // leaves either unreferenced data (collected by gc) or a complete version.
        CrashPoint.hit("add-before-commit")
        try commitPacks(packs + deltaPacks)
        CrashPoint.hit("add-after-packs")
        let objectBytes = object.encoded()
        let versionID = SHA256Hasher.hash(objectBytes)
        try Publication.publish([VersionRecord(name: name, version: version, id: versionID, versionObject: objectBytes, treeObject: [],
                                                 treeFile: (treeFile, treeID))],
                                to: LocalVersionDestination(store: self))
        CrashPoint.hit("add-after-ref")
        // Last: a crash before this leaves delta packs no set names; gc keeps what they hold
        // for live chunks (Format.md §7.3) and drops the rest.
        if let base = deltaBase, !deltaPacks.isEmpty, base.id != versionID {
            try writeDeltaSet(DeltaSet(target: versionID, base: base.id, packs: deltaPacks.map(\.id)))
        }
        refreshMultiPackIndexIfBehind()
        // `ls` then finds this version's figures without reading its tree again; a failure only
        // costs `ls` computing them.
        _ = try? cacheListing(of: versionID, object: object, tree: tree, index: try loadChunkIndex())
        var result = AddResult(name: name, version: version, versionID: versionID, treeID: treeID, inputBytes: total,
                               storedBytes: ingester.storedBytes, newChunks: ingester.newChunks, reusedChunks: ingester.reusedChunks,
                               reusedBytes: ingester.reusedBytes, files: entries.count, alreadyPresent: false, seconds: Timestamp.monotonicSeconds() - started)
        result.deltas = deltaStats
        result.deltaBase = deltaBase.map { "\($0.name)@\($0.version)" }
        return result
    }
}
