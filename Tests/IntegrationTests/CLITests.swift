import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The `slmstore` command as a user runs it: outputs, --json, and one-line errors that leave
/// the store untouched.
final class CLITests: XCTestCase {
    var dir = ""
    var storePath = ""

    override func setUp() {
        dir = TestSupport.scratch()
        storePath = dir + "/store"
    }

    func makeModel(_ sub: String, seed: UInt64 = 1) -> String {
        let path = "\(dir)/\(sub)"
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [200_000], TestSupport.bf16Like(400_000, seed: seed)),
                                                   ("b", "F32", [4], TestSupport.random(16, seed: seed))]),
                          to: path + "/model.safetensors")
        TestSupport.write(Array("{\"hidden_size\": 4}\n".utf8), to: path + "/config.json")
        return path
    }

    @discardableResult
    func cli(_ args: [String]) -> TestSupport.Run { TestSupport.cli(args, store: storePath) }

    /// Runs a command that must fail: non-zero exit, a one-line error mentioning `fragment`,
    /// and the store byte-for-byte as it was.
    func assertFails(_ args: [String], mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let before = TestSupport.snapshot(storePath)
        let r = cli(args)
        XCTAssertNotEqual(r.status, 0, "should fail: \(args)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one error line expected, got: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(fragment), "\"\(r.stderr)\" should mention \"\(fragment)\"", file: file, line: line)
        XCTAssertEqual(TestSupport.snapshot(storePath), before, "store changed after a failed \(args)", file: file, line: line)
    }

    /// #45: a mistyped command or option gets the nearest known one suggested; a word far from
    /// every known one gets no guess.
    func testAMistypedCommandOrOptionGetsADidYouMean() {
        let command = cli(["chekout", "m@1.0.0"])
        XCTAssertEqual(command.status, 2)
        XCTAssertTrue(command.stderr.contains("did you mean `slmstore checkout`?"), command.stderr)
        let option = cli(["ls", "--jsn"])
        XCTAssertEqual(option.status, 2)
        XCTAssertTrue(option.stderr.contains("did you mean --json?"), option.stderr)
        XCTAssertFalse(cli(["zzzzzz"]).stderr.contains("did you mean"))
    }

    /// #45: a checkout that fails (a damaged pack) leaves no partial directory behind.
    func testAFailedCheckoutLeavesNothingBehind() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", makeModel("a")]).status, 0)
        let packs = try FileSystem.listDirectory(storePath + "/packs").filter { $0.hasSuffix(".pack") }
        for p in packs {
            let path = "\(storePath)/packs/\(p)"
            var bytes = TestSupport.read(path)
            for i in stride(from: 64, to: bytes.count, by: 997) { bytes[i] ^= 0xff }
            try? FileManager.default.removeItem(atPath: path)
            TestSupport.write(bytes, to: path)
        }
        let r = cli(["checkout", "m@1.0.0", dir + "/out"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertFalse(FileSystem.exists(dir + "/out"), "the failed checkout's directory is gone")
        try FileSystem.makeDirectories(dir + "/empty")
        XCTAssertNotEqual(cli(["checkout", "m@1.0.0", dir + "/empty"]).status, 0)
        XCTAssertEqual(try FileSystem.listDirectory(dir + "/empty"), [], "an empty directory is left empty")
    }

    /// #45: `pull --to` refuses a folder holding someone else's files (unless --force), before
    /// downloading anything; a mistyped URL is named as such.
    func testPullToRefusesAForeignFolderAndAMistypedURLIsNamed() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", makeModel("a")]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        TestSupport.write(Array("notes".utf8), to: dir + "/photos/holiday.jpg")
        let device = dir + "/device-store"
        let refused = TestSupport.cli(["pull", dir + "/remote", "m@1.0.0", "--to", dir + "/photos"], store: device)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("holiday.jpg") && refused.stderr.contains("--force"), refused.stderr)
        XCTAssertEqual(try FileSystem.listDirectory(dir + "/photos"), ["holiday.jpg"])
        XCTAssertFalse(try FileSystem.exists(device + "/packs") && FileSystem.listDirectory(device + "/packs").contains { $0.hasSuffix(".pack") })
        XCTAssertEqual(TestSupport.cli(["pull", dir + "/remote", "m@1.0.0", "--to", dir + "/photos", "--force"], store: device).status, 0)
        // Its own directory again needs no --force.
        XCTAssertEqual(TestSupport.cli(["pull", dir + "/remote", "m@1.0.0", "--to", dir + "/photos"], store: device).status, 0)
        let typo = TestSupport.cli(["pull", "http//127.0.0.1:1/store", "m@1.0.0"], store: device)
        XCTAssertEqual(typo.status, 2)
        XCTAssertTrue(typo.stderr.contains("did you mean http://127.0.0.1:1/store"), typo.stderr)
    }

    /// #45: 16 bytes of a pack overwritten; `verify` names the damage, `verify --repair REMOTE`
    /// fetches the damaged chunks again from a good remote and leaves a store that verifies and
    /// checks out the exact bytes.
    func testVerifyRepairRefetchesDamagedChunksFromARemote() throws {
        let model = try pushedThenDamaged()
        let repair = cli(["verify", "--repair", dir + "/remote", "--json"])
        XCTAssertEqual(repair.status, 0, repair.stdout + repair.stderr)
        let json = try TestSupport.json(repair)
        XCTAssertGreaterThan(json["repaired"]?["dropped_records"]?.int64Value ?? 0, 0)
        XCTAssertEqual(json["repaired"]?["pulled"]?.arrayValue?.compactMap(\.stringValue), ["m@1.0.0"])
        XCTAssertEqual(json["ok"], .bool(true))
        XCTAssertEqual(cli(["verify"]).status, 0)
        XCTAssertEqual(cli(["checkout", "m@1.0.0", dir + "/out"]).status, 0)
        XCTAssertEqual(TestSupport.read(dir + "/out/model.safetensors"), TestSupport.read(model + "/model.safetensors"))
    }

    /// #45: a plain `pull` of a version the store holds with damaged chunks fetches them again.
    func testPullingAVersionWithDamagedLocalChunksFetchesThemAgain() throws {
        let model = try pushedThenDamaged()
        let pull = cli(["pull", dir + "/remote", "m@1.0.0", "--json"])
        XCTAssertEqual(pull.status, 0, pull.stdout + pull.stderr)
        XCTAssertGreaterThan(try TestSupport.json(pull)["chunks_fetched"]?.int64Value ?? 0, 0, pull.stdout)
        XCTAssertTrue(pull.stderr.contains("damaged"), pull.stderr)
        XCTAssertEqual(cli(["verify"]).status, 0)
        XCTAssertEqual(cli(["checkout", "m@1.0.0", dir + "/out"]).status, 0)
        XCTAssertEqual(TestSupport.read(dir + "/out/model.safetensors"), TestSupport.read(model + "/model.safetensors"))
    }

    /// m@1.0.0 added and pushed to dir/remote, then damaged here (verify fails with 5); returns
    /// the model's folder.
    func pushedThenDamaged() throws -> String {
        let model = makeModel("a")
        XCTAssertEqual(cli(["add", "m@1.0.0", model]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        try overwriteSixteenBytesOfAPack()
        XCTAssertEqual(cli(["verify"]).status, 5)
        return model
    }

    /// 16 bytes of the store's first pack overwritten (the damage #45 repaired).
    func overwriteSixteenBytesOfAPack() throws {
        let pack = try XCTUnwrap(try FileSystem.listDirectory(storePath + "/packs").first { $0.hasSuffix(".pack") })
        let path = "\(storePath)/packs/\(pack)"
        var bytes = TestSupport.read(path)
        for i in 100..<116 { bytes[i] ^= 0x5a }
        try FileManager.default.removeItem(atPath: path)
        TestSupport.write(bytes, to: path)
    }

    /// Without a remote, repair takes the damaged records out and says what is still missing.
    func testVerifyRepairWithoutARemoteLeavesTheDamageNamed() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", makeModel("a")]).status, 0)
        try overwriteSixteenBytesOfAPack()
        let r = cli(["verify", "--repair"])
        XCTAssertEqual(r.status, 5)
        XCTAssertTrue(r.stdout.contains("version m@1.0.0 is damaged"), r.stdout)
    }

    /// #45: Ctrl-C during a pull prints one line saying what was kept and exits 130; running the
    /// same command again finishes it.
    func testAnInterruptedPullSaysWhatWasKeptAndResumes() throws {
        TestSupport.write(TestSupport.safetensors([("w", "U8", [1 << 20], TestSupport.random(1 << 20, seed: 8))]), to: dir + "/big/model.safetensors")
        XCTAssertEqual(cli(["add", "m@1.0.0", dir + "/big"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.binary)
        p.arguments = ["--store", dir + "/device", "pull", dir + "/remote", "m@1.0.0", "--max-rate", "100K"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        Thread.sleep(forTimeInterval: 1.5)
        kill(p.processIdentifier, SIGINT)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, stderr)
        XCTAssertTrue(stderr.contains("interrupted") && stderr.contains("run the same command again to resume"), stderr)
        XCTAssertEqual(stderr.split(separator: "\n").count, 1, stderr)
        XCTAssertEqual(TestSupport.cli(["pull", dir + "/remote", "m@1.0.0"], store: dir + "/device").status, 0)
    }

    /// #45: on a terminal (a pty from script(1)) a pull draws a bar with the time left;
    /// `--no-progress` draws none.
    func testTheProgressBarShowsTheTimeLeftAndNoProgressHidesIt() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("script(1) is not installed") }
        TestSupport.write(TestSupport.random(3 << 20, seed: 9), to: dir + "/big/w.bin")
        XCTAssertEqual(cli(["add", "m@1.0.0", dir + "/big"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        func onTerminal(_ extra: [String], store: String) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            let command = ([TestSupport.binary, "--store", store] + extra + ["pull", dir + "/remote", "m@1.0.0", "--max-rate", "1M"]).joined(separator: " ")
            p.arguments = ["-qec", command, "/dev/null"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, text)
            return text
        }
        let shown = try onTerminal([], store: dir + "/d1")
        XCTAssertTrue(shown.contains("pull [") && shown.contains("ETA"), shown)
        // The bar's last speed and the summary's rate are the same measure (bytes over the
        // download's time), so they agree: not 154 against 64 MB/s as #45 saw.
        func rates(_ text: String) -> [Double] {
            let words = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "(", with: " ").split(separator: " ")
            return zip(words, words.dropFirst()).compactMap { $1.hasPrefix("MB/s") ? Double($0) : nil }
        }
        let lastBar = try XCTUnwrap(shown.components(separatedBy: "pull [").last)
        let barRate = try XCTUnwrap(rates(lastBar.components(separatedBy: "pulled").first ?? "").last, shown)
        let summaryRate = try XCTUnwrap(rates(try XCTUnwrap(shown.components(separatedBy: "pulled").last)).first, shown)
        XCTAssertEqual(barRate, summaryRate, accuracy: max(0.3 * summaryRate, 0.15), shown)
        XCTAssertFalse(try onTerminal(["--no-progress"], store: dir + "/d2").contains("pull ["))
        // --quiet: no bar and no summary, the version still pulled.
        let quiet = try onTerminal(["--quiet"], store: dir + "/d3")
        XCTAssertFalse(quiet.contains("pull [") || quiet.contains("pulled"), quiet)
        XCTAssertEqual(TestSupport.cli(["show", "m@1.0.0"], store: dir + "/d3").status, 0)
    }

    /// #45: --verbose says each retry; --quiet keeps what a listing command prints.
    func testVerboseSaysEachRetryAndQuietKeepsAListing() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", makeModel("a")]).status, 0)
        XCTAssertTrue(cli(["--quiet", "ls"]).stdout.contains("m"), "ls keeps its listing under --quiet")
        XCTAssertEqual(cli(["--quiet", "add", "m@1.0.1", makeModel("b")]).stdout, "", "add's summary goes under --quiet")
        // Two chunk ranges answered 500: each retry said with --verbose, none without.
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        let nginx = try NginxServer(serving: dir + "/remote")
        defer { nginx.stop() }
        let proxy = try FaultProxy(upstream: nginx.port, mode: "error500", count: 2)
        let verbose = TestSupport.cli(["--verbose", "pull", proxy.url, "m@1.0.0"], store: dir + "/dev1")
        XCTAssertEqual(verbose.status, 0, verbose.stderr)
        XCTAssertTrue(verbose.stderr.contains("attempt 1 failed, retrying"), verbose.stderr)
        let proxy2 = try FaultProxy(upstream: nginx.port, mode: "error500", count: 2)
        let plain = TestSupport.cli(["pull", proxy2.url, "m@1.0.0"], store: dir + "/dev2")
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("retrying"), plain.stderr)
    }

    /// #45: the user config gives a default store and default options; typed options win, and
    /// a broken config is an error naming the file.
    func testTheUserConfigGivesDefaultsThatTypedOptionsOverride() throws {
        let config = dir + "/user/config.json"
        TestSupport.write(Array(#"{"store": "\#(dir)/configured", "defaults": {"*": ["--quiet"], "ls": ["--json"]}}"#.utf8), to: config)
        let env = ["SLMSTORE_CONFIG": config]
        let add = TestSupport.cli(["add", "m@1.0.0", makeModel("a")], store: nil, environment: env)
        XCTAssertEqual(add.status, 0, add.stderr)
        XCTAssertEqual(add.stdout, "", "--quiet from the config's global defaults")
        XCTAssertTrue(FileSystem.exists(dir + "/configured/config"), "the config's store was used")
        let ls = TestSupport.cli(["ls"], store: nil, environment: env)
        XCTAssertEqual(try TestSupport.json(ls)["models"]?.arrayValue?.count, 1, ls.stdout)
        // A typed --store wins over the config's.
        XCTAssertNotEqual(TestSupport.cli(["show", "m@1.0.0"], store: dir + "/elsewhere", environment: env).status, 0)
        TestSupport.write(Array("{\"stor\": 1}".utf8), to: config)
        let broken = TestSupport.cli(["ls"], store: nil, environment: env)
        XCTAssertEqual(broken.status, 2)
        XCTAssertTrue(broken.stderr.contains(config) && broken.stderr.contains("unknown key \"stor\""), broken.stderr)
    }

    /// #45: a refused connection to a remote that never answered fails at once, naming where.
    func testARefusedConnectionFailsAtOnceNamingTheAddress() throws {
        let port = freePort()
        let started = Date()
        let r = TestSupport.cli(["pull", "http://127.0.0.1:\(port)/store", "m@1.0.0"], store: dir + "/dev")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "not retried for seconds")
        XCTAssertTrue(r.stderr.contains("connection refused: nothing is listening at 127.0.0.1:\(port) (not retried)"), r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "127.0.0.1:\(port)").count, 3, "the URL once, the address once: \(r.stderr)")
    }

    /// #45: Ctrl-C during an add prints one line on what is safe and exits 130; the store verifies.
    func testAnInterruptedAddSaysNothingWasAddedAndExits130() throws {
        TestSupport.write(TestSupport.random(48 << 20, seed: 12), to: dir + "/huge/w.bin")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.binary)
        p.arguments = ["--store", storePath, "add", "m@1.0.0", dir + "/huge"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        usleep(300_000)
        kill(p.processIdentifier, SIGINT)
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, text)
        XCTAssertTrue(text.contains("interrupted: nothing was added"), text)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertEqual(cli(["verify"]).status, 0)
        XCTAssertNotEqual(cli(["show", "m@1.0.0"]).status, 0)
    }

    /// A Hugging Face cache as huggingface_hub lays it out: blobs named by hash, refs/main
    /// naming a commit, snapshots/<commit>/ holding links into ../../blobs.
    func makeHuggingFaceCache() throws -> (repo: String, commit: String) {
        let repo = dir + "/hub/models--acme--tiny"
        let commit = String(repeating: "ab", count: 20)
        let files: [(String, [UInt8])] = [("config.json", Array("{\"hidden\": 4}\n".utf8)),
                                          ("model.safetensors", TestSupport.safetensors([("w", "BF16", [1000], TestSupport.bf16Like(2000, seed: 4))]))]
        for (name, bytes) in files {
            let blob = SHA256Hasher.hash(bytes).hex
            TestSupport.write(bytes, to: "\(repo)/blobs/\(blob)")
            try FileSystem.makeDirectories("\(repo)/snapshots/\(commit)")
            try FileManager.default.createSymbolicLink(atPath: "\(repo)/snapshots/\(commit)/\(name)", withDestinationPath: "../../blobs/\(blob)")
        }
        TestSupport.write(Array(commit.utf8), to: "\(repo)/refs/main")
        return (repo, commit)
    }

    /// #45: `add` takes a Hugging Face cache's repository folder, its snapshots/ folder or one
    /// snapshot, and stores the snapshot's files (the same tree each way), never blobs/ or refs/.
    func testAddOfAHuggingFaceCacheFolderStoresTheSnapshotsFiles() throws {
        let (repo, commit) = try makeHuggingFaceCache()
        var trees: [String] = []
        for (v, path) in [("1.0.0", repo), ("1.0.1", repo + "/snapshots"), ("1.0.2", "\(repo)/snapshots/\(commit)")] {
            let r = cli(["add", "tiny@\(v)", path, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let show = try TestSupport.json(cli(["show", "tiny@\(v)", "--json"]))
            XCTAssertEqual(show["files"]?.arrayValue?.compactMap { $0["path"]?.stringValue }, ["config.json", "model.safetensors"], path)
            XCTAssertEqual(show["card"]?["source"]?["revision"]?.stringValue, commit)
            trees.append(show["tree_id"]?.stringValue ?? "")
        }
        XCTAssertEqual(Set(trees).count, 1, "one tree whichever folder was named")
        XCTAssertEqual(trees.first?.count, 64)
        let missing = cli(["add", "tiny@2.0.0", repo, "--revision", "dev"])
        XCTAssertEqual(missing.status, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("refs/dev") && missing.stderr.contains("--revision"), missing.stderr)
        XCTAssertEqual(cli(["add", "tiny@2.0.0", repo, "--revision", commit]).status, 0)
    }

    /// #45: a hex string too short to be a version id prefix says so.
    func testAShortIDSaysItNeedsEightHexDigits() {
        XCTAssertEqual(cli(["init"]).status, 0)
        let r = cli(["show", "abc12"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("at least 8 hex digits (this has 5)"), r.stderr)
    }

    /// #45: the manual page comes with the binary: every command, EXIT STATUS and ENVIRONMENT.
    func testTheManPageListsEveryCommandTheExitStatusesAndTheEnvironment() {
        let r = cli(["man"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix(".TH SLMSTORE 1"), String(r.stdout.prefix(80)))
        for section in [".SH EXIT STATUS", ".SH ENVIRONMENT", ".SS push", ".SS device", ".SS man", "SLMSTORE_TOKEN", ".TP\n130"] {
            XCTAssertTrue(r.stdout.contains(section), section)
        }
    }

    /// #45: every option a command accepts is in its --help (read from each command's
    /// OptionSpec in the CLI's sources).
    func testEveryOptionACommandTakesIsInItsHelp() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/slmstore")
        var text = ""
        for file in try FileManager.default.contentsOfDirectory(atPath: sources.path) where file.hasSuffix(".swift") {
            text += try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
        }
        let command = try NSRegularExpression(pattern: #"Command\(\s*name: "([a-z-]+)".*?spec: (OptionSpec\((?:[^()]|\([^()]*\))*\))"#,
                                              options: [.dotMatchesLineSeparators])
        let option = try NSRegularExpression(pattern: #""(--[a-z-]+)""#)
        var checked = 0
        for m in command.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let name = (text as NSString).substring(with: m.range(at: 1)), spec = (text as NSString).substring(with: m.range(at: 2))
            var options = Set(option.matches(in: spec, range: NSRange(spec.startIndex..., in: spec)).map { (spec as NSString).substring(with: $0.range(at: 1)) })
            if spec.contains("tlsOptionNames") { options.formUnion(["--cacert", "--cert", "--key"]) }
            let help = cli([name, "--help"]).stdout
            for o in options.sorted() { XCTAssertTrue(help.contains(o), "\(name) --help does not mention \(o)") }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 20)
    }

    /// #45: a build in a checkout names its commit (the package writes it in at build time).
    func testVersionNamesTheCommitOfASourceBuild() throws {
        let r = cli(["--version"])
        XCTAssertEqual(r.status, 0)
        XCTAssertFalse(r.stdout.contains("commit unknown"), r.stdout)
        XCTAssertNotNil(r.stdout.range(of: #"commit [0-9a-f]{12}"#, options: .regularExpression), r.stdout)
    }

    /// #45: `status --to DIR` after `pull --to DIR` shows the model, its current version and
    /// where it came from (it said "never synced" before).
    func testStatusCoversADirectoryPullInstalled() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", makeModel("a")]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        XCTAssertEqual(TestSupport.cli(["pull", dir + "/remote", "m@1.0.0", "--to", dir + "/dev"], store: dir + "/edge").status, 0)
        let r = cli(["status", "--to", dir + "/dev", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try TestSupport.json(r)
        XCTAssertEqual(json["models"]?["m"]?["current"]?.stringValue, "1.0.0")
        XCTAssertEqual(json["remote"]?.stringValue, dir + "/remote")
        XCTAssertFalse(cli(["status", "--to", dir + "/dev"]).stdout.contains("never synced"))
    }

    /// #45: a named remote stands for its URL and settings wherever a command takes REMOTE;
    /// an option on the command line still wins.
    func testANamedRemoteCarriesItsURLAndSettings() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", makeModel("a")]).status, 0)
        XCTAssertEqual(cli(["keygen", dir + "/key"]).status, 0)
        XCTAssertEqual(cli(["remote", "add", "origin", dir + "/remote"]).status, 0)
        XCTAssertEqual(cli(["push", "origin", "--no-web", "--sign", dir + "/key"]).status, 0)
        XCTAssertTrue(FileSystem.exists(dir + "/remote/release.json"), "push origin wrote into the named directory")
        let device = dir + "/device"
        XCTAssertEqual(TestSupport.cli(["remote", "add", "origin", dir + "/remote", "--trust", dir + "/key.pub"], store: device).status, 0)
        let pulled = TestSupport.cli(["pull", "origin", "m@1.0.0", "--to", dir + "/dev"], store: device)
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        XCTAssertFalse(try FileSystem.listDirectory(device + "/trust").isEmpty, "the remote's --trust was applied: a release record was kept")
        let list = try TestSupport.json(TestSupport.cli(["remote", "list", "--json"], store: device))
        XCTAssertEqual(list["remotes"]?["origin"]?["url"]?.stringValue, dir + "/remote")
        XCTAssertEqual(list["remotes"]?["origin"]?["trust"]?.arrayValue?.first?.stringValue, dir + "/key.pub")
        XCTAssertEqual(TestSupport.cli(["remote", "remove", "origin"], store: device).status, 0)
        XCTAssertNotEqual(TestSupport.cli(["pull", "origin", "m@1.0.0"], store: device).status, 0, "gone")
    }

    /// #45: `completion bash` completes commands and each command's options in a real bash;
    /// zsh and fish scripts name every command too.
    func testShellCompletionCompletesCommandsAndTheirOptions() throws {
        let script = dir + "/complete.bash"
        TestSupport.write(Array(cli(["completion", "bash"]).stdout.utf8), to: script)
        func complete(_ words: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            let quoted = words.map { "'\($0)'" }.joined(separator: " ")
            p.arguments = ["-c", "source '\(script)'; COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1); _slmstore; echo \"${COMPREPLY[*]}\""]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        XCTAssertEqual(try complete(["slmstore", "chec"]), "checkout")
        XCTAssertEqual(try complete(["slmstore", "ls", "--js"]), "--json")
        XCTAssertEqual(try complete(["slmstore", "--store", "/s", "pull", "--tr"]), "--trust")
        XCTAssertTrue(try complete(["slmstore", "fleet", "--"]).contains("--apply"))
        for shell in ["zsh", "fish"] {
            let text = cli(["completion", shell]).stdout
            XCTAssertTrue(text.contains("checkout") && text.contains("device") && text.contains("json"), shell)
        }
        XCTAssertEqual(cli(["completion", "tcsh"]).status, 2)
    }

    /// #45: removing a version that another names as its parent (or is stored as deltas
    /// against) is refused with the dependants named; --force removes it and they keep working.
    func testRemovingAParentIsRefusedWithItsDependantsUnlessForced() throws {
        XCTAssertEqual(cli(["add", "acme/llm@1.0.0", makeModel("a", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["add", "acme/llm@1.1.0", makeModel("b", seed: 2)]).status, 0)
        assertFails(["rm", "acme/llm@1.0.0"], mentioning: "acme/llm@1.1.0 (parent)")
        XCTAssertTrue(cli(["rm", "acme/llm@1.0.0"]).stderr.contains("--force"))
        XCTAssertEqual(cli(["rm", "acme/llm@1.0.0", "--force"]).status, 0)
        XCTAssertEqual(cli(["gc"]).status, 0)
        XCTAssertEqual(cli(["verify"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0, "push keeps working for the dependant")
        XCTAssertEqual(cli(["checkout", "acme/llm@1.1.0", dir + "/out"]).status, 0)
    }

    /// #45: re-adding a removed version that a remote holds says so before anything is
    /// written, with what to do; --force adds it anyway (and push then refuses it, as warned).
    func testReaddingARemovedVersionARemoteHoldsIsRefusedBeforeAnythingIsWritten() throws {
        let model = makeModel("a", seed: 1)
        XCTAssertEqual(cli(["add", "acme/llm@1.0.0", model]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        XCTAssertEqual(cli(["rm", "acme/llm@1.0.0"]).status, 0)
        XCTAssertEqual(cli(["gc"]).status, 0)
        let before = TestSupport.snapshot(storePath + "/packs")
        let r = cli(["add", "acme/llm@1.0.0", model])
        XCTAssertEqual(r.status, 4, r.stderr)
        XCTAssertTrue(r.stderr.contains(dir + "/remote holds it as") && r.stderr.contains("slmstore pull") && r.stderr.contains("--force"), r.stderr)
        XCTAssertEqual(TestSupport.snapshot(storePath + "/packs"), before, "nothing written")
        // Pulling it back is the way out: the same id again.
        XCTAssertEqual(cli(["pull", dir + "/remote", "acme/llm@1.0.0"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote", "--no-web"]).status, 0)
        // A version number never pushed is added as before.
        XCTAssertEqual(cli(["add", "acme/llm@1.1.0", makeModel("b", seed: 2)]).status, 0)
    }

    /// #45: `show NAME` means the model's latest version.
    func testShowOfAModelNameAloneShowsItsLatestVersion() throws {
        XCTAssertEqual(cli(["add", "acme/llm@1.0.0", makeModel("a", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["add", "acme/llm@1.1.0", makeModel("b", seed: 2)]).status, 0)
        let r = cli(["show", "acme/llm", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.json(r)["version"]?.stringValue, "1.1.0")
    }

    func testAddJSONReportsWhatWasStored() throws {
        let r = cli(["add", "intent@1.0.0", makeModel("v1"), "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try TestSupport.json(r)
        for key in ["version_id", "input_bytes", "stored_bytes", "new_chunks", "reused_chunks"] {
            XCTAssertNotNil(j[key], "missing \(key)")
        }
        XCTAssertEqual(j["reused_chunks"]?.uint64Value, 0)
        XCTAssertGreaterThan(j["new_chunks"]!.uint64Value!, 1)
        XCTAssertLessThan(j["stored_bytes"]!.uint64Value!, j["input_bytes"]!.uint64Value!)
    }

    func testAddAcceptsIndividualFilesUnderTheirBaseNames() throws {
        let m = makeModel("v1")
        XCTAssertEqual(cli(["add", "intent@1.1.0", m + "/model.safetensors", m + "/config.json"]).status, 0)
        let show = try TestSupport.json(cli(["show", "intent@1.1.0", "--json"]))
        XCTAssertEqual(show["files"]?.arrayValue?.compactMap { $0["path"]?.stringValue }, ["config.json", "model.safetensors"])
    }

    func testShowJSONListsEveryChunkAndTensor() throws {
        cli(["add", "intent@1.0.0", makeModel("v1")])
        let j = try TestSupport.json(cli(["show", "intent@1.0.0", "--json"]))
        let model = j["files"]!.arrayValue!.first { $0["path"]?.stringValue == "model.safetensors" }!
        let chunks = model["chunks"]!.arrayValue!
        XCTAssertGreaterThan(chunks.count, 1)
        XCTAssertEqual(chunks.reduce(UInt64(0)) { $0 + $1["raw_length"]!.uint64Value! }, model["size"]!.uint64Value!)
        XCTAssertNotNil(chunks[0]["stored_length"]?.uint64Value)
        XCTAssertEqual(model["tensors"]?.arrayValue?.map { $0["name"]!.stringValue! }, ["w", "b"])
        XCTAssertEqual(model["tensors"]?.arrayValue?.first?["dtype"]?.stringValue, "BF16")
    }

    func testShowLogAndLsDescribeTheStore() throws {
        cli(["add", "acme/intent@1.0.0", makeModel("v1")])
        cli(["add", "acme/intent@1.1.0", makeModel("v2", seed: 2)])
        let show = cli(["show", "acme/intent@1.1.0"])
        XCTAssertTrue(show.stdout.contains("model.safetensors") && show.stdout.contains("BF16") && show.stdout.contains("[200000]"), show.stdout)
        let log = try TestSupport.json(cli(["log", "acme/intent", "--json"]))
        XCTAssertEqual(log["versions"]?.arrayValue?.map { $0["version"]!.stringValue! }, ["1.0.0", "1.1.0"])
        let ls = try TestSupport.json(cli(["ls", "--json"]))
        XCTAssertEqual(ls["models"]?.arrayValue?.first?["name"]?.stringValue, "acme/intent")
        XCTAssertTrue(cli(["ls"]).stdout.contains("acme/intent"))
    }

    func testCheckoutAndCatGiveTheExactBytes() throws {
        let m = makeModel("v1")
        cli(["add", "intent@1.0.0", m])
        XCTAssertEqual(cli(["checkout", "intent@1.0.0", dir + "/out"]).status, 0)
        XCTAssertSameBytes(TestSupport.read(dir + "/out/model.safetensors"), TestSupport.read(m + "/model.safetensors"))
        XCTAssertEqual(cli(["cat", "intent@1.0.0", "config.json"]).stdout, "{\"hidden_size\": 4}\n")
    }

    func testVersionIdPrefixResolves() throws {
        let id = try TestSupport.json(cli(["add", "intent@1.0.0", makeModel("v1"), "--json"]))["version_id"]!.stringValue!
        let show = try TestSupport.json(cli(["show", String(id.prefix(10)), "--json"]))
        XCTAssertEqual(show["version"]?.stringValue, "1.0.0")
    }

    func testStoreOptionWorksAfterTheCommandAndFromTheEnvironment() throws {
        let m = makeModel("v1")
        XCTAssertEqual(TestSupport.cli(["add", "--store", storePath, "x@1.0.0", m]).status, 0)
        let r = TestSupport.cli(["ls", "--json"], environment: ["SLMSTORE_DIR": storePath])
        XCTAssertEqual(try TestSupport.json(r)["models"]?.arrayValue?.count, 1)
    }

    func testDefaultStoreIsCreatedUnderXDGDataHome() throws {
        let r = TestSupport.cli(["add", "x@1.0.0", makeModel("v1")], environment: ["XDG_DATA_HOME": dir + "/xdg", "SLMSTORE_DIR": ""])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileSystem.exists(dir + "/xdg/slmstore/config"))
    }

    func testIdenticalReaddSaysSo() {
        let m = makeModel("v1")
        cli(["add", "intent@1.0.0", m])
        let r = cli(["add", "intent@1.0.0", m])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("already stored"), r.stdout)
    }

    func testEveryCommandHasHelp() {
        for c in ["init", "add", "ls", "show", "log", "checkout", "cat", "verify", "demo"] {
            let r = TestSupport.cli([c, "--help"])
            XCTAssertEqual(r.status, 0, c)
            XCTAssertTrue(r.stdout.contains("usage: slmstore \(c)"), c)
        }
    }

    // MARK: Bad input

    func testMissingPathIsRefused() {
        cli(["init"])
        assertFails(["add", "intent@1.0.0", dir + "/nope"], mentioning: "nope: no such file or directory")
    }

    func testUnreadableFileIsRefused() throws {
        cli(["init"])
        let m = makeModel("v1")
        chmod(m + "/config.json", 0)
        defer { chmod(m + "/config.json", 0o644) }
        if getuid() == 0 {
            // root reads anything: use a directory entry that cannot be read instead.
            mkfifo(dir + "/fifo", 0o644)
            assertFails(["add", "intent@1.0.0", dir + "/fifo"], mentioning: "fifo: not a regular file")
        } else {
            assertFails(["add", "intent@1.0.0", m], mentioning: "config.json: not readable")
        }
    }

    func testInvalidNameAndVersionAreRefused() {
        cli(["init"])
        let m = makeModel("v1")
        assertFails(["add", "Intent@1.0.0", m], mentioning: "invalid model name \"Intent\"")
        assertFails(["add", "intent@1.0", m], mentioning: "not NAME@VERSION")
        assertFails(["add", "intent", m], mentioning: "say which version")
    }

    func testBadSafetensorsIsRefusedNamingTheFile() {
        cli(["init"])
        let m = makeModel("v1")
        let path = m + "/model.safetensors"
        let bytes = TestSupport.read(path)
        TestSupport.write(Array(bytes.prefix(bytes.count - 10)), to: path)
        assertFails(["add", "intent@1.0.0", m], mentioning: "model.safetensors: invalid safetensors header")
    }

    func testDifferentContentForExistingVersionIsRefused() {
        cli(["add", "intent@1.0.0", makeModel("v1")])
        assertFails(["add", "intent@1.0.0", makeModel("v2", seed: 9)], mentioning: "already exists with different content")
    }

    func testUnknownReferenceIsRefused() {
        cli(["add", "intent@1.0.0", makeModel("v1")])
        assertFails(["show", "intent@9.9.9"], mentioning: "unknown version intent@9.9.9; known versions: 1.0.0")
        assertFails(["checkout", "nosuch@1.0.0", dir + "/o"], mentioning: "unknown model nosuch")
        assertFails(["show", "deadbeefdeadbeef"], mentioning: "no version id starts with deadbeefdeadbeef")
    }

    func testCheckoutIntoNonEmptyDirectoryNeedsForce() {
        cli(["add", "intent@1.0.0", makeModel("v1")])
        TestSupport.write([1], to: dir + "/busy/existing")
        assertFails(["checkout", "intent@1.0.0", dir + "/busy"], mentioning: "busy: directory exists and is not empty")
        XCTAssertEqual(cli(["checkout", "intent@1.0.0", dir + "/busy", "--force"]).status, 0)
        XCTAssertTrue(FileSystem.exists(dir + "/busy/model.safetensors"))
    }

    func testUnknownOptionIsRefused() {
        cli(["init"])
        assertFails(["ls", "--frobnicate"], mentioning: "unknown option --frobnicate")
    }

    func testVerifyFailsWithStatusFiveOnDamage() throws {
        cli(["add", "intent@1.0.0", makeModel("v1")])
        XCTAssertEqual(cli(["verify"]).status, 0)
        let store = try Store.open(at: storePath)
        let pack = try store.packIDs()[0]
        let entry = try store.readPackIndex(pack).entries.max { $0.storedLength < $1.storedLength }!
        TestSupport.flipByte(in: store.packPath(pack), at: entry.offset + 40)
        let r = cli(["verify"])
        XCTAssertEqual(r.status, 5)
        XCTAssertTrue(r.stdout.contains("version intent@1.0.0 is damaged: model.safetensors"), r.stdout)
        let co = cli(["checkout", "intent@1.0.0", dir + "/o"])
        XCTAssertEqual(co.status, 5)
        XCTAssertTrue(co.stderr.contains(entry.id.hex), co.stderr)
        XCTAssertFalse(FileSystem.exists(dir + "/o/model.safetensors"))
    }
}

/// Finding 9 of #28: names that come from files and remotes reach the terminal escaped.
final class TerminalEscapeTests: XCTestCase {
    func testControlCharactersInFileAndTensorNamesAreEscapedInHumanOutputButExactInJSON() throws {
        let dir = TestSupport.scratch()
        let store = dir + "/store"
        let evilFile = "clear\u{1b}[2J\u{1b}]0;owned\u{07}.bin"
        let evilTensor = "w\u{1b}[31m\u{9b}2J"
        for (v, seed) in [("1.0.0", UInt64(1)), ("1.1.0", UInt64(2))] {
            TestSupport.write(TestSupport.safetensors([(evilTensor, "BF16", [100_000], TestSupport.bf16Like(200_000, seed: seed))]),
                              to: "\(dir)/src-\(v)/model.safetensors")
            TestSupport.write(TestSupport.random(4096, seed: seed), to: "\(dir)/src-\(v)/\(evilFile)")
            XCTAssertEqual(TestSupport.cli(["add", "m@\(v)", "\(dir)/src-\(v)"], store: store).status, 0)
        }
        for args in [["show", "m@1.1.0"], ["diff", "m@1.0.0", "m@1.1.0"], ["ls", "m"]] {
            let r = TestSupport.cli(args, store: store)
            let all = r.stdout + r.stderr
            XCTAssertFalse(all.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{07}" || $0 == "\u{9b}" }, "\(args): \(all.debugDescription)")
        }
        let shown = TestSupport.cli(["show", "m@1.1.0"], store: store)
        XCTAssertTrue(shown.stdout.contains("clear\\x1b[2J\\x1b]0;owned\\x07.bin"), shown.stdout)
        // An error that names the file is one escaped line too.
        let missing = TestSupport.cli(["cat", "m@1.1.0", "x\u{1b}[2Jy"], store: store)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertFalse(missing.stderr.unicodeScalars.contains("\u{1b}"), missing.stderr.debugDescription)
        XCTAssertTrue(missing.stderr.contains("x\\x1b[2Jy"), missing.stderr)
        let json = try TestSupport.json(TestSupport.cli(["show", "m@1.1.0", "--json"], store: store))
        XCTAssertTrue("\(json)".contains(evilFile) || (json["files"]?.arrayValue?.contains { $0["path"]?.stringValue == evilFile } ?? false), "\(json)")
    }
}

/// #31: a Hugging Face cache snapshot (files are links into ../../blobs) is stored as its files,
/// and the version records the repository and revision it came from.
final class HuggingFaceSnapshotTests: XCTestCase {
    func testASnapshotDirectoryIsStoredAsItsFilesWithTheRevisionInProvenance() throws {
        let dir = TestSupport.scratch()
        let repo = dir + "/hub/models--sentence-transformers--all-MiniLM-L6-v2"
        let revision = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
        let snapshot = "\(repo)/snapshots/\(revision)"
        let weights = TestSupport.safetensors([("w", "F32", [1000], TestSupport.random(4000, seed: 5))])
        let config = Array("{\"hidden_size\": 384}\n".utf8)
        TestSupport.write(weights, to: repo + "/blobs/aaaa")
        TestSupport.write(config, to: repo + "/blobs/bbbb")
        try FileSystem.makeDirectories(snapshot + "/1_Pooling")
        try FileManager.default.createSymbolicLink(atPath: snapshot + "/model.safetensors", withDestinationPath: "../../blobs/aaaa")
        try FileManager.default.createSymbolicLink(atPath: snapshot + "/1_Pooling/config.json", withDestinationPath: "../../../blobs/bbbb")
        let store = dir + "/store"
        let r = TestSupport.cli(["add", "minilm@1.0.0", snapshot], store: store)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = dir + "/out"
        XCTAssertEqual(TestSupport.cli(["checkout", "minilm@1.0.0", out], store: store).status, 0)
        XCTAssertEqual(TestSupport.read(out + "/model.safetensors"), weights)
        XCTAssertEqual(TestSupport.read(out + "/1_Pooling/config.json"), config)
        var st = stat()
        XCTAssertEqual(lstat(out + "/model.safetensors", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG, "stored as a file, not a link")
        let shown = try TestSupport.json(TestSupport.cli(["show", "minilm@1.0.0", "--json"], store: store))
        XCTAssertEqual(shown["card"]?["source"]?["repository"]?.stringValue, "sentence-transformers/all-MiniLM-L6-v2")
        XCTAssertEqual(shown["card"]?["source"]?["revision"]?.stringValue, revision)
        XCTAssertEqual(shown["card"]?["source"]?["hub"]?.stringValue, "huggingface")
    }
}
