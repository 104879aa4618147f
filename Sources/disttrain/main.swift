// The `disttrain` command line: parses flags, maps them onto library configs, reports errors as one line.
// Exit codes: 0 success, 2 usage errors (bad flags or values), 1 runtime errors (bad files, failed collectives).
import ArgumentParser
import Foundation
import Training

struct Disttrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disttrain",
        abstract: "Fine-tune Hugging Face transformer models data-parallel over MPI on CPU clusters.",
        discussion: """
        Run one process for debugging, or the same command under mpirun for data parallelism:
          disttrain train --model models/all-MiniLM-L6-v2 --train-file data/sms-spam/train.jsonl \\
              --eval-file data/sms-spam/test.jsonl --output-dir runs/spam
          mpirun -n 2 disttrain train ...   (same flags; --batch-size stays the global batch)
        """,
        subcommands: [Train.self, Predict.self, Generate.self, Tokenize.self, Merge.self, Bench.self, CommCheck.self])
}

/// Runs the root command with our exit-code policy and never prints a crash trace for user errors.
func runMain() -> Never {
    do {
        var command = try Disttrain.parseAsRoot()
        try command.run()
        exit(0)
    } catch let error as TrainingError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        exit(error.exitCode)
    } catch let error as ExitCode {
        exit(error.rawValue)
    } catch {
        let code = Disttrain.exitCode(for: error)
        if code == .success {
            Disttrain.exit(withError: error)  // --help, --version
        }
        if code == .validationFailure {
            FileHandle.standardError.write(Data((Disttrain.fullMessage(for: error) + "\n").utf8))
            exit(2)
        }
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        exit(1)
    }
}

runMain()
