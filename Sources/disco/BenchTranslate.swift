import ArgumentParser
import Foundation
import DiscoCore
import DiscoGAN
import DiscoImage

struct BenchTranslate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "translate",
        abstract: "Time disco translate: images/s on a folder, and one image from process start to PNG written.",
        discussion: """
        Writes --images generated PNGs (smooth random patterns, RGB, the model's size) and, without \
        --checkpoint, a model with fixed-seed random weights (a generators-only model.safetensors, \
        as disco export writes) into a temporary folder. Then it measures:
        - folder: `disco translate IN/ -o OUT/ --checkpoint MODEL` run as a new process of this \
        executable, --folder-runs times; images/s = images / wall seconds from process start to exit \
        (everything a user waits for). The same stages are then timed one by one in this process, \
        on one core as each of translate's streams runs them: decode, generator forward, encode, \
        write; and the forward alone with all streams at once.
        - one image: `disco translate one.png -o out.png --checkpoint MODEL`, --runs processes, median \
        and best wall seconds; the same without --checkpoint (the default model) when it is found.
        - the generator's GFLOP per image (direct convolution; and what its Winograd GEMMs execute), \
        the forward's GFLOP/s, and sgemm GFLOP/s at --sgemm^3 in the same run: sgemm GFLOP/s / \
        GFLOP per image is the images/s of a forward that ran at sgemm speed throughout.
        """)

    @OptionGroup var shape: ModelShapeOptions
    @OptionGroup var gemm: GEMMOptions
    @Option(help: "Images in the generated folder.") var images = 512
    @Option(help: "Single-image processes timed (each model).") var runs = 10
    @Option(help: "Folder-translation processes timed.") var folderRuns = 3
    @Option(help: "Images per forward pass (disco translate --batch).") var batch = 64
    @Option(help: "A model file or run folder to time instead of a random model of --size/--channels.") var checkpoint: String?
    @Option(help: "sgemm size n of the n^3 reference figure (0: skip).") var sgemm = 4096
    @Flag(help: "Keep the temporary folder (its path is printed).") var keep = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard images >= 1, runs >= 1, folderRuns >= 1, batch >= 1, sgemm >= 0 else {
            throw ValidationError("--images, --runs, --folder-runs and --batch must be positive, --sgemm at least 0")
        }
    }

    func run() throws {
        gemm.apply()
        let blas = try loadBLASOrExplain(applyingGEMMPrecision: true)
        var bench = TranslateBench()
        bench.size = shape.size; bench.channels = shape.channels; bench.images = images; bench.runs = runs
        bench.folderRuns = folderRuns; bench.batch = batch; bench.checkpoint = checkpoint; bench.sgemm = sgemm; bench.keep = keep
        let r = try bench.run { if !json { print($0) } }
        if json { print(jsonString(r)); return }
        func d(_ k: String) -> Double { r[k] as! Double }
        func i(_ k: String) -> Int { r[k] as! Int }
        let split = r["split_ms_per_image"] as! [String: Double], streams = i("split_streams"), n = Double(images)
        let loads = [r["loadavg_start"], r["loadavg_end"]].map { ($0 as! [Double]).map { String(format: "%.2f", $0) }.joined(separator: " ") }
        print(String(format: "translate: %d images %dx%dx%d, batch %d, blas %@, %d threads, load %@ -> %@",
                     images, i("size"), i("size"), i("channels"), batch, blas.coreName, Parallel.threads, loads[0], loads[1]))
        print(String(format: "  folder (disco translate process, %d runs): %.0f images/s best (%.3f s), %.0f median",
                     folderRuns, n / d("folder_seconds_best"), d("folder_seconds_best"), n / d("folder_seconds_median")))
        print(String(format: "  stages in-process, ms/image on %@: decode %.3f, forward %.3f, encode %.3f, write %.3f -> %.0f images/s with %d stream(s)",
                     streams > 1 ? "one core" : "all cores", split["decode"]!, split["forward"]!, split["encode"]!, split["write"]!,
                     d("split_images_per_s"), streams))
        print(String(format: "  generator forward alone, %d stream(s) at once: %.0f images/s = %.0f GFLOP/s of direct-convolution FLOPs (%.3f GFLOP/image; %.3f in the inference path's Winograd GEMMs)",
                     streams, d("forward_images_per_s"), d("forward_gflops"), d("gflop_per_image"), d("executed_gflop_per_image")))
        if d("sgemm_gflops") > 0 {
            print(String(format: "  sgemm %d^3: %.0f GFLOP/s -> %.0f images/s for a direct forward at sgemm speed (%.0f with the executed FLOPs)",
                         sgemm, d("sgemm_gflops"), d("sgemm_bound_images_per_s"), d("sgemm_bound_executed_images_per_s")))
        }
        print(String(format: "  one image, process start to PNG written (%d runs): median %.3f s, best %.3f s", runs, d("single_seconds_median"), d("single_seconds_best")))
        if let shape = r["default_model"] as? String {
            print(String(format: "  one image, default model (%@): median %.3f s, best %.3f s", shape, d("default_single_seconds_median"), d("default_single_seconds_best")))
        }
    }
}
