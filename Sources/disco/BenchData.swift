import ArgumentParser
import DiscoImage
import Foundation

struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Time loading batches: Fashion-MNIST domains and 256x256 JPEGs shrunk to the model size.",
        discussion: """
        Builds its data under --work if missing (Fashion-MNIST bags-shoes at --size, and --jpegs \
        generated 256x256 JPEGs per domain). For each data set it reports the milliseconds to prepare \
        one batch of one domain, wall and CPU (first epoch: decode + resize; cached: later epochs of a \
        domain that fits in memory), \
        then runs the background loader against a consumer that sleeps --step seconds per iteration, \
        as the trainer computes, and reports how long the consumer waited for data.
        """)

    @Option(help: "Images per batch and domain.") var batch = 64
    @Option(help: "Image side the model sees.") var size = 64
    @Option(help: "Channels the model sees for the JPEGs (Fashion-MNIST is loaded with its own 1).") var channels = 3
    @Option(help: "Batches timed per measurement.") var batches = 8
    @Option(help: "Simulated training iteration, in seconds.") var step = 0.8
    @Option(help: "Iterations of the simulated training loop.") var iterations = 10
    @Option(help: "Generated 256x256 JPEGs per domain.") var jpegs = 256
    @Option(help: "Folder for the generated bench data.") var work = "/tmp/disco-bench-data"
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard channels == 1 || channels == 3 else { throw ValidationError("--channels must be 1 or 3, got \(channels)") }
        guard batch > 0, size > 0, batches > 0, iterations > 0, step >= 0, jpegs >= batch else {
            throw ValidationError("--batch, --size, --batches, --iterations must be positive and --jpegs at least --batch")
        }
    }

    func run() throws {
        var bench = DataBench()
        bench.batch = batch; bench.size = size; bench.channels = channels; bench.batches = batches
        bench.step = step; bench.iterations = iterations; bench.jpegs = jpegs; bench.work = work
        let results: [[String: Any]]
        do { results = try bench.run { if !json { print($0) } } } catch let error as ImageError {
            throw CLIError(error.description)
        }
        if json { print(jsonString(["batch": batch, "size": size, "step_s": step, "results": results])); return }
        for r in results {
            print(String(format: "%@: decode+resize %.1f ms/batch (%.1f ms CPU, %.1f%% of a %.2f s step); cached %.2f ms/batch (%.2f ms CPU)",
                         r["data"] as! String, r["ms_per_batch_decode"] as! Double, r["cpu_ms_per_batch_decode"] as! Double,
                         r["decode_cpu_percent_of_step"] as! Double, step,
                         r["ms_per_batch_cached"] as! Double, r["cpu_ms_per_batch_cached"] as! Double))
            print(String(format: "  simulated training (%d iterations of %.2f s): consumer waited %.1f ms for the first batch, %.2f ms in total after it",
                         iterations, step, r["wait_ms_first"] as! Double, r["wait_ms_steady"] as! Double))
        }
    }
}
