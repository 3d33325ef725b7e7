import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// The GAN evaluation (GANEval.swift) and its classifier (FashionClassifier.swift), on real
/// Fashion-MNIST read from Debian's dataset-fashion-mnist (as the CLI data tests do).
final class GANEvalTests: XCTestCase {
    /// Fashion-MNIST's t10k split and the first images of train, as `EvalImages`.
    static let data: (train: EvalImages, test: EvalImages)? = {
        func images(_ split: FashionMNIST.Split, _ n: Int) -> EvalImages {
            let t = Tensor(uninitialized: [n, 28, 28, 1])
            for i in 0..<(n * 784) { t.data[i] = Float(split.pixels[i]) / 255 }
            return EvalImages(classNames: FashionMNIST.classNames, images: t, labels: split.labels.prefix(n).map(Int.init))
        }
        guard let train = try? FashionMNIST.load(split: "train"), let test = try? FashionMNIST.load(split: "t10k") else { return nil }
        return (images(train, 9000), images(test, 2000))
    }()

    /// The short run every test here shares: 9000 training images, 2 epochs (about 8 s on 2 cores).
    static let shortRunSettings = FashionClassifier.Settings(epochs: 2, batch: 32, learningRate: 3e-3, seed: 1)
    static let shortRun: FashionClassifier? = data.map { FashionClassifier.train(on: $0.train, settings: shortRunSettings) }

    func fixtures() throws -> (train: EvalImages, test: EvalImages, classifier: FashionClassifier) {
        guard let d = Self.data, let c = Self.shortRun else {
            XCTFail("Fashion-MNIST is missing from \(FashionMNIST.defaultDirectory): apt-get install dataset-fashion-mnist")
            throw FashionClassifier.ClassifierError("no data")
        }
        return (d.train, d.test, c)
    }

    /// Returns real images: for label k (conditional) the next image of class k in `pool`, cycling;
    /// unconditional, `pool`'s images in order from an offset drawn from the seed.
    struct RealImageSampler: GANSampler {
        let pool: EvalImages
        let conditional: Bool
        var classNames: [String]? { conditional ? pool.classNames : nil }

        func sample(count: Int, labels: [Int]?, seed: UInt64) throws -> Tensor {
            var picks: [Int] = []
            if let labels {
                var next = [Int](repeating: 0, count: pool.classNames.count)
                let byClass = (0..<pool.classNames.count).map { k in pool.labels!.indices.filter { pool.labels![$0] == k } }
                for k in labels { picks.append(byClass[k][next[k] % byClass[k].count]); next[k] += 1 }
            } else {
                var rng = Xoshiro256(seed: seed)
                let start = Int(rng.next() % UInt64(pool.count))
                picks = (0..<count).map { (start + $0) % pool.count }
            }
            return pool.subset(picks).images
        }
    }

    struct NoiseSampler: GANSampler {
        var classNames: [String]? { nil }
        func sample(count: Int, labels: [Int]?, seed: UInt64) throws -> Tensor {
            var rng = Xoshiro256(seed: seed)
            return Tensor.uniform([count, 28, 28, 1], low: 0, high: 1, rng: &rng)
        }
    }

    /// The classifier, trained by disco on 9000 images for 2 epochs, classifies more than 85% of
    /// 2000 test images right.
    func testShortRunClassifierAbove85Percent() throws {
        let (_, test, classifier) = try fixtures()
        let accuracy = classifier.accuracy(on: test)
        print("short-run classifier: \(accuracy * 100)% of \(test.count) test images")
        XCTAssertGreaterThan(accuracy, 0.85, "short-run classifier accuracy \(accuracy)")
        // its prediction is the arg max of the forward pass's logits (classify vs forward)
        let x = test.subset(Array(0..<7)).images
        let out = classifier.forward(x, mode: .eval, record: false)
        let c = classifier.classify(x)
        for r in 0..<7 {
            let row = (0..<10).map { out.logits[r * 10 + $0] }
            XCTAssertEqual(c.labels[r], row.firstIndex(of: row.max()!))
        }
        XCTAssertEqual(maxAbsDifference(c.features, out.features), 0)
    }

    /// One training step's gradients against central differences of the loss, through the whole
    /// classifier (conv, BN, flatten, linear, softmax cross-entropy): for every parameter tensor,
    /// its 4 largest-gradient elements and 4 random ones. At each element the best of three steps
    /// and of central and one-sided differences counts: a step straddling a ReLU kink is off at that
    /// step only, and at a kink within rounding of the point (measured: c2.bn.bias[26], 2% between
    /// the two sides) the analytic gradient is one side's; a wrong gradient is off for all of them.
    func testClassifierGradientsMatchFiniteDifferences() throws {
        let model = FashionClassifier(classNames: ["a", "b", "c"])
        model.initialize(seed: 4)
        var rng = Xoshiro256(seed: 8)
        let x = Tensor.uniform([4, 28, 28, 1], low: 0, high: 1, rng: &rng)
        let labels = [0, 2, 1, 2]
        func loss() -> Double {
            Double(softmaxCrossEntropyLoss(logits: model.forward(x, mode: .train, record: false).logits, labels: labels).loss)
        }
        model.trunk.zeroGradients(); model.head.zeroGradients()
        let out = model.forward(x, mode: .train, record: true)
        let l = softmaxCrossEntropyLoss(logits: out.logits, labels: labels)
        let dFlat = model.head.backward(out.head, dOutput: l.grad)
        model.trunk.backward(out.trunk, dOutput: dFlat.reshaped([4, 7, 7, 64]), inputGradient: false)
        var tensors: [(String, Tensor, Tensor)] = model.trunk.parameters.entries.map {
            ($0.name, model.trunk.parameters.value($0.name), model.trunk.parameters.grad($0.name))
        }
        for (i, name) in ["fc1", "fc2"].enumerated() {
            tensors.append(("\(name).weight", model.head.weights[i], model.head.weightGrads[i]))
            tensors.append(("\(name).bias", model.head.biases[i], model.head.biasGrads[i]))
        }
        for (name, p, g) in tensors {
            let largest = (0..<g.count).sorted { abs(g[$0]) > abs(g[$1]) }.prefix(4)
            let indices = Array(Set(Array(largest) + (0..<4).map { _ in Int(rng.next() % UInt64(g.count)) })).sorted()
            let scale = (0..<g.count).reduce(0.0) { max($0, Double(abs(g[$1]))) }
            XCTAssertGreaterThan(scale, 0, "\(name): zero gradient, the check would be vacuous")
            for i in indices {
                let saved = p[i]
                let here = loss()
                let errors = [Float(1e-2), 3e-3, 1e-3].map { h -> Double in
                    p[i] = saved + h; let up = loss()
                    p[i] = saved - h; let down = loss()
                    p[i] = saved
                    let step = Double(h), want = Double(g[i])
                    // central, and one-sided: right at a kink the analytic gradient is one side's
                    return min(abs((up - down) / (2 * step) - want), abs((up - here) / step - want), abs((here - down) / step - want))
                }
                XCTAssertLessThanOrEqual(errors.min()!, 1e-2 * scale + 1e-4, "\(name)[\(i)]: analytic \(g[i]), errors \(errors)")
            }
        }
    }

    /// save/load gives the same predictions and features; damaged files are refused naming the
    /// file and the command that rebuilds the classifier.
    func testSaveLoadAndDamagedFilesAreRefused() throws {
        let (_, test, classifier) = try fixtures()
        let dir = NSTemporaryDirectory() + "disco-classifier-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let info = FashionClassifier.Info(classes: classifier.classNames, testAccuracy: 0.875, testCount: 2000, testData: "t",
                                          trainCount: 6000, trainData: "d", settings: Self.shortRunSettings, seconds: 1)
        try classifier.save(to: dir, info: info)
        let loaded = try FashionClassifier.load(from: dir)
        XCTAssertEqual(loaded.info, info)
        let x = test.subset(Array(0..<50)).images
        let a = classifier.classify(x), b = loaded.classify(x)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(maxAbsDifference(a.features, b.features), 0)

        let weights = dir + "/" + FashionClassifier.weightsFile, json = dir + "/" + FashionClassifier.infoFile
        let goodWeights = try Data(contentsOf: URL(fileURLWithPath: weights)), goodJSON = try Data(contentsOf: URL(fileURLWithPath: json))
        func refused(_ path: String, _ bytes: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
            try bytes.write(to: URL(fileURLWithPath: path))
            defer { try? goodWeights.write(to: URL(fileURLWithPath: weights)); try? goodJSON.write(to: URL(fileURLWithPath: json)) }
            XCTAssertThrowsError(try FashionClassifier.load(from: dir), file: file, line: line) { e in
                let s = "\(e)"
                XCTAssertTrue(s.contains(path) && s.contains(fragment) && s.contains("disco gan classifier"), s, file: file, line: line)
            }
        }
        try refused(json, Data("{not json".utf8), "not valid JSON")
        try refused(json, Data(String(decoding: goodJSON, as: UTF8.self).replacingOccurrences(of: "\"test_accuracy\"", with: "\"accuracy\"").utf8), "test_accuracy")
        try refused(json, Data(String(decoding: goodJSON, as: UTF8.self).replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 7").utf8), "version 7")
        try refused(weights, goodWeights.prefix(goodWeights.count / 2), "safetensors")
        var tensors = classifier.stateDict()
        tensors[3].1.data[2] = .nan
        try refused(weights, Safetensors.serialize(tensors), "NaN")
        try refused(weights, Safetensors.serialize(Array(classifier.stateDict().dropLast())), "fc2.bias")
        let wrongClasses = FashionClassifier(classNames: ["a", "b", "c"])
        try refused(weights, Safetensors.serialize(wrongClasses.stateDict()), "fc2.weight")
        try FileManager.default.removeItem(atPath: weights)
        XCTAssertThrowsError(try FashionClassifier.load(from: dir)) { XCTAssertTrue("\($0)".contains(weights), "\($0)") }
    }

    /// Real images against a held-out real split score a Fréchet distance far below noise's (and
    /// exactly 0 against themselves); unconditional samples of every class have a class entropy
    /// near log 10, those of one class near 0.
    func testFrechetAndEntropyOnRealImages() throws {
        let (_, test, classifier) = try fixtures()
        let real = test.subset(Array(0..<1000)), heldOut = test.subset(Array(1000..<2000))
        let same = try GANEvaluation.evaluate(sampler: RealImageSampler(pool: real, conditional: false), real: real,
                                              count: 1000, seed: 0, classifier: classifier)
        let split = try GANEvaluation.evaluate(sampler: RealImageSampler(pool: heldOut, conditional: false), real: real,
                                               count: 1000, seed: 3, classifier: classifier)
        let noise = try GANEvaluation.evaluate(sampler: NoiseSampler(), real: real, count: 1000, seed: 0, classifier: classifier)
        XCTAssertEqual(same.frechetDistance, 0, accuracy: 1e-6 * noise.frechetDistance, "the same 1000 images, reordered")
        XCTAssertLessThan(split.frechetDistance, 0.05 * noise.frechetDistance, "held-out \(split.frechetDistance) vs noise \(noise.frechetDistance)")
        XCTAssertGreaterThan(split.frechetDistance, 0)
        XCTAssertFalse(split.conditional)
        XCTAssertNil(split.labelAccuracy)
        XCTAssertEqual(split.histogram.reduce(0, +), 1000)
        XCTAssertGreaterThan(split.entropyFraction, 0.97, "\(split.histogram)")
        XCTAssertEqual(split.entropy, split.entropyFraction * log(10.0), accuracy: 1e-12)
        // entropy from the histogram, recomputed
        let h = -split.histogram.map { Double($0) / 1000 }.filter { $0 > 0 }.reduce(0.0) { $0 + $1 * log($1) }
        XCTAssertEqual(split.entropy, h, accuracy: 1e-12)
        XCTAssertEqual(split.classifierRealAccuracy, classifier.accuracy(on: real), accuracy: 0)

        let trousers = real.subset(real.labels!.indices.filter { real.labels![$0] == 1 })
        let collapsed = try GANEvaluation.evaluate(sampler: RealImageSampler(pool: trousers, conditional: false), real: real,
                                                   count: 500, seed: 0, classifier: classifier)
        XCTAssertLessThan(collapsed.entropyFraction, 0.15, "\(collapsed.histogram)")
        XCTAssertGreaterThan(collapsed.histogram[1], 450)
        XCTAssertGreaterThan(collapsed.frechetDistance, 10 * split.frechetDistance)
    }

    /// A conditional sampler returning real images of the requested class: its label accuracy is
    /// the classifier's accuracy on exactly those images, overall and per class.
    func testConditionalLabelAccuracyIsClassifierAccuracy() throws {
        let (_, test, classifier) = try fixtures()
        // 100 images per class, so 1000 samples (label i % 10) are exactly this set
        var balanced: [Int] = []
        for k in 0..<10 { balanced += test.labels!.indices.filter { test.labels![$0] == k }.prefix(100) }
        let pool = test.subset(balanced)
        let r = try GANEvaluation.evaluate(sampler: RealImageSampler(pool: pool, conditional: true), real: test,
                                           count: 1000, seed: 0, classifier: classifier)
        let predicted = classifier.classify(pool.images).labels
        XCTAssertTrue(r.conditional)
        XCTAssertEqual(try XCTUnwrap(r.labelAccuracy), classifier.accuracy(on: pool), accuracy: 1e-12)
        for k in 0..<10 {
            let hits = (0..<1000).filter { pool.labels![$0] == k && predicted[$0] == k }.count
            XCTAssertEqual(try XCTUnwrap(r.perClassLabelAccuracy?[k] ?? nil), Double(hits) / 100, accuracy: 1e-12, "class \(k)")
        }
        XCTAssertEqual(r.frechetDistance, try Frechet.distance(FeatureStatistics(features: classifier.classify(test.images).features),
                                                               FeatureStatistics(features: classifier.classify(pool.images).features)),
                       accuracy: 1e-5 * r.frechetDistance, "float32 features of other batches differ in rounding only")
        // class names are matched by name: a sampler whose classes the classifier lacks is refused
        let foreign = EvalImages(classNames: ["x", "y"], images: pool.subset([0, 1]).images, labels: [0, 1])
        XCTAssertThrowsError(try GANEvaluation.evaluate(sampler: RealImageSampler(pool: foreign, conditional: true), real: test,
                                                        count: 4, seed: 0, classifier: classifier)) {
            XCTAssertTrue("\($0)".contains("'x'"), "\($0)")
        }
    }
}
