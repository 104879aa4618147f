// RepoHygieneTests (issue 21): scripts and docs work on any machine. No absolute path of a development machine
// (/work/..., /root/..., /home/...) and no package registry's web address appears in the tracked files: scripts
// default to the repository's own folders and `mktemp -d`, and packages are fetched through pip, never by URL.
import Foundation
import XCTest

final class RepoHygieneTests: XCTestCase {
    func testNoDevelopmentMachinePathOrRegistryAddressIsTracked() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/git"),
              FileManager.default.fileExists(atPath: CLI.repoRoot.appendingPathComponent(".git").path) else {
            throw XCTSkip("not a git checkout")
        }
        let pattern = #"(^|[^A-Za-z0-9_.~-])/(work|root|home)/|pypi\.org|pythonhosted\.org|registry\.npmjs\.org|crates\.io/api|proxy\.golang\.org"#
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", CLI.repoRoot.path, "grep", "-nIE", pattern, "--", ".", ":!Tests/CLITests/RepoHygieneTests.swift"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let hits = String(decoding: data, as: UTF8.self).split(separator: "\n").map { String($0.prefix(200)) }
        XCTAssertEqual(p.terminationStatus, 1, "git grep exits 1 when nothing matches; found:\n\(hits.joined(separator: "\n"))")
        XCTAssertEqual(hits, [])
    }
}
