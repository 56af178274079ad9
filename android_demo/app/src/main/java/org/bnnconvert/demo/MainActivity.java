package org.bnnconvert.demo;

import android.content.Intent;
import android.content.SharedPreferences;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.graphics.Matrix;
import android.net.Uri;
import android.os.Bundle;
import android.view.Menu;
import android.view.MenuItem;
import android.widget.ImageView;
import android.widget.TextView;
import androidx.activity.result.ActivityResultLauncher;
import androidx.activity.result.PickVisualMediaRequest;
import androidx.activity.result.contract.ActivityResultContracts;
import androidx.appcompat.app.AlertDialog;
import androidx.appcompat.app.AppCompatActivity;
import androidx.core.content.FileProvider;
import androidx.exifinterface.media.ExifInterface;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.bnnconvert.demo.core.ModelMetadata;
import org.bnnconvert.demo.core.TopK;

/**
 * Take or pick a photo, classify it with the current model, show the top 5 and the latency.
 *
 * <p>The model is the file chosen with "Open model…" (remembered), else {@code
 * assets/model.tflite} if the APK bundles one. Loading, decoding and inference run on one worker
 * thread, which alone touches the {@link Classifier}; the UI thread only shows results.
 */
public final class MainActivity extends AppCompatActivity {
    private static final String PREFS = "settings";
    private static final String PREF_THREADS = "threads";
    private static final String PREF_MODEL_URI = "model_uri";
    private static final String BUNDLED_MODEL = "model.tflite";
    private static final String STATE_CAPTURE = "capture_uri";
    private static final int[] THREAD_CHOICES = {1, 2, 4, 8};
    private static final int RUNS = 20;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private Classifier classifier; // worker thread only
    private Bitmap photo; // worker thread only

    private SharedPreferences prefs;
    private TextView modelInfo;
    private TextView results;
    private TextView latency;
    private ImageView photoView;
    private Uri captureUri;

    private final ActivityResultLauncher<PickVisualMediaRequest> pickPhoto =
            registerForActivityResult(new ActivityResultContracts.PickVisualMedia(), uri -> {
                if (uri != null) {
                    loadPhoto(uri);
                }
            });

    private final ActivityResultLauncher<Uri> takePhoto =
            registerForActivityResult(new ActivityResultContracts.TakePicture(), saved -> {
                if (Boolean.TRUE.equals(saved) && captureUri != null) {
                    loadPhoto(captureUri);
                }
            });

    private final ActivityResultLauncher<String[]> openModel =
            registerForActivityResult(new ActivityResultContracts.OpenDocument(), uri -> {
                if (uri == null) {
                    return;
                }
                getContentResolver().takePersistableUriPermission(
                        uri, Intent.FLAG_GRANT_READ_URI_PERMISSION);
                prefs.edit().putString(PREF_MODEL_URI, uri.toString()).apply();
                loadModel();
            });

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        prefs = getSharedPreferences(PREFS, MODE_PRIVATE);
        modelInfo = findViewById(R.id.model_info);
        results = findViewById(R.id.results);
        latency = findViewById(R.id.latency);
        photoView = findViewById(R.id.photo);
        if (savedInstanceState != null) {
            String saved = savedInstanceState.getString(STATE_CAPTURE);
            captureUri = saved == null ? null : Uri.parse(saved);
        }
        findViewById(R.id.gallery).setOnClickListener(v -> pickPhoto.launch(
                new PickVisualMediaRequest.Builder()
                        .setMediaType(ActivityResultContracts.PickVisualMedia.ImageOnly.INSTANCE)
                        .build()));
        findViewById(R.id.camera).setOnClickListener(v -> startCamera());
        loadModel();
    }

    @Override
    protected void onSaveInstanceState(Bundle outState) {
        super.onSaveInstanceState(outState);
        if (captureUri != null) {
            outState.putString(STATE_CAPTURE, captureUri.toString());
        }
    }

    @Override
    protected void onDestroy() {
        super.onDestroy();
        worker.execute(() -> {
            if (classifier != null) {
                classifier.close();
                classifier = null;
            }
        });
        worker.shutdown();
    }

    @Override
    public boolean onCreateOptionsMenu(Menu menu) {
        getMenuInflater().inflate(R.menu.main, menu);
        return true;
    }

    @Override
    public boolean onOptionsItemSelected(MenuItem item) {
        if (item.getItemId() == R.id.open_model) {
            openModel.launch(new String[] {"application/octet-stream", "*/*"});
            return true;
        }
        if (item.getItemId() == R.id.threads) {
            chooseThreads();
            return true;
        }
        return super.onOptionsItemSelected(item);
    }

    private int threads() {
        return prefs.getInt(PREF_THREADS, 1);
    }

    private void chooseThreads() {
        String[] labels = new String[THREAD_CHOICES.length];
        int checked = 0;
        for (int i = 0; i < THREAD_CHOICES.length; i++) {
            labels[i] = String.valueOf(THREAD_CHOICES[i]);
            if (THREAD_CHOICES[i] == threads()) {
                checked = i;
            }
        }
        new AlertDialog.Builder(this)
                .setTitle(R.string.threads_title)
                .setSingleChoiceItems(labels, checked, (dialog, which) -> {
                    prefs.edit().putInt(PREF_THREADS, THREAD_CHOICES[which]).apply();
                    dialog.dismiss();
                    loadModel(); // TFLite fixes the thread count when the interpreter is built
                })
                .show();
    }

    private void startCamera() {
        File dir = new File(getCacheDir(), "photos");
        if (!dir.isDirectory() && !dir.mkdirs()) {
            showError("Could not create " + dir + " for the camera photo.");
            return;
        }
        captureUri = FileProvider.getUriForFile(
                this, getPackageName() + ".fileprovider", new File(dir, "capture.jpg"));
        try {
            takePhoto.launch(captureUri);
        } catch (android.content.ActivityNotFoundException e) {
            showError(getString(R.string.no_camera));
        }
    }

    /** (Re)builds the classifier from the chosen or bundled model, then re-runs the photo. */
    private void loadModel() {
        final int threads = threads();
        final String uri = prefs.getString(PREF_MODEL_URI, null);
        worker.execute(() -> {
            if (classifier != null) {
                classifier.close();
                classifier = null;
            }
            try {
                ByteBuffer model = uri != null ? readModel(Uri.parse(uri)) : readBundledModel();
                if (model == null) {
                    runOnUiThread(() -> modelInfo.setText(R.string.no_model));
                    return;
                }
                classifier = Classifier.create(model, threads);
            } catch (Classifier.ModelProblem | IOException | SecurityException e) {
                String message = e.getMessage();
                runOnUiThread(() -> {
                    modelInfo.setText(R.string.no_model);
                    showError(message);
                });
                return;
            }
            final String info = describe(classifier.metadata, threads);
            runOnUiThread(() -> modelInfo.setText(info));
            if (photo != null) {
                classifyOnWorker();
            }
        });
    }

    private ByteBuffer readBundledModel() throws IOException {
        try (InputStream in = getAssets().open(BUNDLED_MODEL)) {
            return readFully(in);
        } catch (FileNotFoundException e) {
            return null; // no model in the APK: ask the user to open one
        }
    }

    private ByteBuffer readModel(Uri uri) throws IOException {
        try (InputStream in = getContentResolver().openInputStream(uri)) {
            if (in == null) {
                throw new IOException("Could not open " + uri);
            }
            return readFully(in);
        }
    }

    /** TFLite needs the model in a direct buffer that outlives the interpreter. */
    private static ByteBuffer readFully(InputStream in) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        byte[] chunk = new byte[1 << 16];
        for (int n; (n = in.read(chunk)) > 0; ) {
            bytes.write(chunk, 0, n);
        }
        ByteBuffer buffer = ByteBuffer.allocateDirect(bytes.size()).order(ByteOrder.nativeOrder());
        buffer.put(bytes.toByteArray());
        buffer.rewind();
        return buffer;
    }

    private void loadPhoto(Uri uri) {
        worker.execute(() -> {
            Bitmap decoded;
            try {
                int side = classifier == null
                        ? 224 : Math.max(classifier.metadata.height, classifier.metadata.width);
                decoded = decode(uri, Math.max(2 * side, 512));
            } catch (IOException | SecurityException e) {
                String message = "Could not read the photo: " + e.getMessage();
                runOnUiThread(() -> showError(message));
                return;
            }
            photo = decoded;
            runOnUiThread(() -> photoView.setImageBitmap(decoded));
            classifyOnWorker();
        });
    }

    /**
     * Decodes a photo upright (EXIF orientation applied), subsampled by Android's decoder in powers
     * of two while its shorter side stays at least {@code minSide}, to bound memory.
     */
    private Bitmap decode(Uri uri, int minSide) throws IOException {
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        try (InputStream in = open(uri)) {
            BitmapFactory.decodeStream(in, null, bounds);
        }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) {
            throw new IOException("not an image Android can decode");
        }
        BitmapFactory.Options options = new BitmapFactory.Options();
        options.inPreferredConfig = Bitmap.Config.ARGB_8888;
        options.inSampleSize = 1;
        while (Math.min(bounds.outWidth, bounds.outHeight) / (options.inSampleSize * 2) >= minSide) {
            options.inSampleSize *= 2;
        }
        Bitmap bitmap;
        try (InputStream in = open(uri)) {
            bitmap = BitmapFactory.decodeStream(in, null, options);
        }
        if (bitmap == null) {
            throw new IOException("the image data is corrupt");
        }
        ExifInterface exif;
        try (InputStream in = open(uri)) {
            exif = new ExifInterface(in);
        }
        Matrix matrix = new Matrix();
        if (exif.isFlipped()) {
            matrix.postScale(-1, 1);
        }
        matrix.postRotate(exif.getRotationDegrees());
        if (matrix.isIdentity()) {
            return bitmap;
        }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.getWidth(), bitmap.getHeight(), matrix, true);
    }

    private InputStream open(Uri uri) throws IOException {
        InputStream in = getContentResolver().openInputStream(uri);
        if (in == null) {
            throw new IOException("Could not open " + uri);
        }
        return in;
    }

    private void classifyOnWorker() {
        if (classifier == null) {
            runOnUiThread(() -> results.setText(R.string.no_model));
            return;
        }
        runOnUiThread(() -> {
            results.setText(R.string.working);
            latency.setText("");
        });
        Classifier.Result result;
        try {
            result = classifier.classify(photo, RUNS);
        } catch (IllegalArgumentException | IllegalStateException e) {
            String message = "Inference failed: " + e.getMessage();
            runOnUiThread(() -> showError(message));
            return;
        }
        final String top = formatTop(result);
        final String timing = String.format(Locale.ROOT, "%s\npreprocessing %.1f ms, %d thread(s)",
                result.latency, result.preprocessMs, classifier.threads);
        runOnUiThread(() -> {
            results.setText(top);
            latency.setText(timing);
        });
    }

    private static String formatTop(Classifier.Result result) {
        StringBuilder text = new StringBuilder();
        for (TopK.Prediction p : result.top) {
            text.append(String.format(Locale.ROOT, "%6.2f %%  %s%n", 100f * p.score, p.label));
        }
        return text.toString();
    }

    private static String describe(ModelMetadata m, int threads) {
        return String.format(Locale.ROOT,
                "%s v%s (bnnconvert %s, %s)\ninput %dx%dx%d, %s, %s fit, keep %.3f\n%d classes%s, %d thread(s)",
                m.name, m.version, m.producerVersion, m.target, m.height, m.width, m.channels,
                m.preprocessing.color, m.preprocessing.fit, m.preprocessing.cropFraction, m.classes,
                m.labels.isEmpty() ? " (no labels)" : "", threads);
    }

    private void showError(String message) {
        results.setText("⚠ " + message);
        latency.setText("");
    }
}
