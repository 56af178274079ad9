package org.bnnconvert.demo.core;

import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.notification.Failure;

/** Runs the given JUnit test classes and prints one closing line: "N passed, N failed, N skipped". */
public final class TestMain {
    private TestMain() {}

    public static void main(String[] args) throws ClassNotFoundException {
        Class<?>[] classes = new Class<?>[args.length];
        for (int i = 0; i < args.length; i++) {
            classes[i] = Class.forName(args[i]);
        }
        Result result = JUnitCore.runClasses(classes);
        for (Failure failure : result.getFailures()) {
            System.out.println("FAIL " + failure.getTestHeader());
            System.out.println("  " + failure.getMessage());
            String trace = failure.getTrace();
            System.out.println(trace.length() > 2000 ? trace.substring(0, 2000) + "..." : trace);
        }
        int skipped = result.getIgnoreCount() + result.getAssumptionFailureCount();
        int failed = result.getFailureCount();
        int passed = result.getRunCount() - failed - result.getAssumptionFailureCount();
        System.out.println(passed + " passed, " + failed + " failed, " + skipped + " skipped");
        System.exit(failed == 0 && result.getRunCount() > 0 ? 0 : 1);
    }
}
