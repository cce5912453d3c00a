// Loads N znodes with D-byte data into a ZooKeeper server as fast as the Java client allows
// (async creates, bounded window), in the layout of Zinc's tree benchmark:
// /bench/dNNNN/nNNNNNN, 1000 nodes per directory. Run with Java's source launcher:
//   java -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
//       scripts/bench/ZkLoad.java 127.0.0.1:2181 1000000 100
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public class ZkLoad {
    static final int PER_DIRECTORY = 1000;
    static final int WINDOW = 5000;

    public static void main(String[] args) throws Exception {
        String hosts = args[0];
        int znodes = Integer.parseInt(args[1]);
        byte[] data = new byte[Integer.parseInt(args[2])];
        java.util.Arrays.fill(data, (byte) 'x');
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, 30000, event -> connected.countDown());
        connected.await();
        zk.create("/bench", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        int directories = (znodes + PER_DIRECTORY - 1) / PER_DIRECTORY;
        for (int d = 0; d < directories; d++) {
            zk.create(String.format("/bench/d%04d", d), new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE,
                CreateMode.PERSISTENT);
        }
        Semaphore window = new Semaphore(WINDOW);
        AtomicLong failures = new AtomicLong();
        long started = System.nanoTime();
        for (int i = 0; i < znodes; i++) {
            window.acquire();
            String path = String.format("/bench/d%04d/n%06d", i / PER_DIRECTORY, i);
            zk.create(path, data, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT,
                (rc, p, ctx, name) -> {
                    if (rc != 0) {
                        failures.incrementAndGet();
                    }
                    window.release();
                }, null);
        }
        window.acquire(WINDOW);
        double seconds = (System.nanoTime() - started) / 1e9;
        System.out.printf("created=%d failures=%d seconds=%.1f%n", znodes, failures.get(), seconds);
        zk.close();
        if (failures.get() != 0) {
            System.exit(1);
        }
    }
}
