package org.bnnconvert.demo;

import android.graphics.Bitmap;
import android.os.SystemClock;
import java.io.Closeable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.bnnconvert.demo.core.LatencyStats;
import org.bnnconvert.demo.core.LceOps;
import org.bnnconvert.demo.core.MetadataException;
import org.bnnconvert.demo.core.ModelMetadata;
import org.bnnconvert.demo.core.Preprocessing;
import org.bnnconvert.demo.core.TfliteModelFile;
import org.bnnconvert.demo.core.TopK;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;

/** One exported model on TFLite with LCE's ops: preprocess from metadata, run, time, decode. */
final class Classifier implements Closeable {
    /** A model this app cannot run; the message says why and what to do. */
    static final class ModelProblem extends Exception {
        private static final long serialVersionUID = 1L;

        ModelProblem(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** What one classification gives. */
    static final class Result {
        final List<TopK.Prediction> top;
        final LatencyStats latency;
        final double preprocessMs;

        Result(List<TopK.Prediction> top, LatencyStats latency, double preprocessMs) {
            this.top = top;
            this.latency = latency;
            this.preprocessMs = preprocessMs;
        }
    }

    private static final int WARMUP_RUNS = 2;

    final ModelMetadata metadata;
    final int threads;
    private final Interpreter interpreter;
    private final ByteBuffer input;
    /** {@code float[1][classes]}, or {@code byte[1][classes]} for an int8 output. */
    private final Object output;
    /** {@link #output} under the classifier's output index (other outputs are not read). */
    private final Map<Integer, Object> outputs;

    private Classifier(ModelMetadata metadata, Interpreter interpreter, int threads) {
        this.metadata = metadata;
        this.interpreter = interpreter;
        this.threads = threads;
        int bytesPerValue = metadata.inputQuantization.isInt8() ? 1 : 4;
        input = ByteBuffer.allocateDirect(
                        bytesPerValue * metadata.height * metadata.width * metadata.channels)
                .order(ByteOrder.nativeOrder());
        output = metadata.outputQuantization.isInt8()
                ? new byte[1][metadata.classes]
                : new float[1][metadata.classes];
        outputs = Collections.singletonMap(metadata.outputIndex, output);
    }

    /**
     * Reads the metadata, checks the custom ops, and builds the interpreter.
     *
     * @param model the .tflite file, a direct or memory-mapped buffer that stays valid while the
     *     classifier lives
     */
    static Classifier create(ByteBuffer model, int threads) throws ModelProblem {
        ModelMetadata metadata;
        try {
            metadata = ModelMetadata.fromModel(model);
        } catch (MetadataException e) {
            throw new ModelProblem(e.getMessage(), e);
        }
        if (metadata.preprocessing == null) {
            throw new ModelProblem("This model's metadata has no preprocessing. Export it with "
                    + "--preprocessing (e.g. imagenet or digits) so the app knows how to feed it.", null);
        }
        List<String> unsupported;
        try {
            unsupported = LceOps.unsupported(TfliteModelFile.customOps(model));
        } catch (IllegalArgumentException e) {
            throw new ModelProblem("Not a TFLite model file: " + e.getMessage(), e);
        }
        if (!unsupported.isEmpty()) {
            throw new ModelProblem("The model uses custom ops " + unsupported + " that neither TFLite "
                    + "nor LCE provides. Convert it without them (Flex/SELECT_TF_OPS are not supported).",
                    null);
        }
        Interpreter interpreter;
        try {
            interpreter = new Interpreter(model, new Interpreter.Options().setNumThreads(threads));
        } catch (IllegalArgumentException | IllegalStateException e) {
            String message = String.valueOf(e.getMessage());
            if (message.contains("custom op")) {
                throw new ModelProblem("This app's TFLite runtime cannot resolve LCE's ops ("
                        + message.trim() + "). Build the app with LCE's tflite-lce.aar as in "
                        + "android_demo/README.md, not Maven's org.tensorflow:tensorflow-lite.", e);
            }
            throw new ModelProblem("TFLite could not load the model: " + message.trim(), e);
        }
        try {
            checkTensors(metadata, interpreter);
        } catch (ModelProblem e) {
            interpreter.close();
            throw e;
        }
        return new Classifier(metadata, interpreter, threads);
    }

    private static void checkTensors(ModelMetadata m, Interpreter interpreter) throws ModelProblem {
        Tensor in = interpreter.getInputTensor(0);
        int[] expectedIn = {1, m.height, m.width, m.channels};
        DataType inType = m.inputQuantization.isInt8() ? DataType.INT8 : DataType.FLOAT32;
        if (in.dataType() != inType || !Arrays.equals(in.shape(), expectedIn)) {
            throw new ModelProblem("The model's input is " + in.dataType() + " "
                    + Arrays.toString(in.shape()) + " but its metadata says " + inType + " "
                    + Arrays.toString(expectedIn) + "; re-export the model.", null);
        }
        if (m.outputIndex >= interpreter.getOutputTensorCount()) {
            throw new ModelProblem("The model's metadata names output " + m.outputIndex
                    + " as the classifier but the model has " + interpreter.getOutputTensorCount()
                    + " output(s); re-export the model.", null);
        }
        Tensor out = interpreter.getOutputTensor(m.outputIndex);
        int[] expectedOut = {1, m.classes};
        DataType outType = m.outputQuantization.isInt8() ? DataType.INT8 : DataType.FLOAT32;
        if (out.dataType() != outType || !Arrays.equals(out.shape(), expectedOut)) {
            throw new ModelProblem("The model's output is " + out.dataType() + " "
                    + Arrays.toString(out.shape()) + " but its metadata says " + outType + " "
                    + Arrays.toString(expectedOut) + " class scores; re-export the model.", null);
        }
    }

    /** Preprocesses {@code photo}, runs the model {@code runs} times, returns the top 5. */
    Result classify(Bitmap photo, int runs) {
        long start = SystemClock.elapsedRealtimeNanos();
        int w = photo.getWidth();
        int h = photo.getHeight();
        int[] argb = new int[w * h];
        photo.getPixels(argb, 0, w, 0, 0, w, h);
        Preprocessing pre = metadata.preprocessing;
        float[] tensor = pre.apply(Preprocessing.argbToRgb(argb), w, h, metadata.height, metadata.width);
        input.rewind();
        if (metadata.inputQuantization.isInt8()) {
            input.put(metadata.inputQuantization.quantize(tensor));
        } else {
            input.asFloatBuffer().put(tensor);
        }
        double preprocessMs = (SystemClock.elapsedRealtimeNanos() - start) / 1e6;

        for (int i = 0; i < WARMUP_RUNS; i++) {
            input.rewind();
            interpreter.runForMultipleInputsOutputs(new Object[] {input}, outputs);
        }
        long[] nanos = new long[runs];
        for (int i = 0; i < runs; i++) {
            input.rewind();
            long t0 = SystemClock.elapsedRealtimeNanos();
            interpreter.runForMultipleInputsOutputs(new Object[] {input}, outputs);
            nanos[i] = SystemClock.elapsedRealtimeNanos() - t0;
        }
        float[] scores = metadata.outputQuantization.isInt8()
                ? metadata.outputQuantization.dequantize(((byte[][]) output)[0])
                : ((float[][]) output)[0].clone();
        return new Result(TopK.of(scores, 5, metadata), LatencyStats.ofNanos(nanos), preprocessMs);
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
