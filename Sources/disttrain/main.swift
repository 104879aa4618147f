import ArgumentParser
import Training

struct Disttrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disttrain",
        abstract: "Fine-tune Hugging Face transformer models data-parallel over MPI on CPU clusters.",
        subcommands: [CommCheck.self])  // wt-dist: local registration of the hidden comm-check (lead resolves)
}
Disttrain.main()
