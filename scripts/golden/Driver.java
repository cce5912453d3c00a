// Golden-vector driver: runs one scenario with the real Apache ZooKeeper Java client.
//
// Usage: java -cp zookeeper.jar:... Driver <scenario> <host:port>
// When a scenario needs the proxy to cut the connection it prints "DROP" on stdout and waits
// for a line on stdin. Any failed expectation exits non-zero.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.Watcher.Event.EventType;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.apache.zookeeper.ZooDefs.Ids;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.admin.ZooKeeperAdmin;
import org.apache.zookeeper.data.Stat;

public class Driver {
    static final BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
    static final Semaphore connected = new Semaphore(0);
    static final Semaphore disconnected = new Semaphore(0);
    static final Semaphore saslDone = new Semaphore(0);

    static final Watcher watcher = event -> {
        System.out.println("event " + event);
        if (event.getType() != EventType.None) {
            events.add(event);
        } else if (event.getState() == KeeperState.SyncConnected) {
            connected.release();
        } else if (event.getState() == KeeperState.Disconnected) {
            disconnected.release();
        } else if (event.getState() == KeeperState.SaslAuthenticated) {
            saslDone.release();
        }
    };

    interface Action {
        Object run() throws Exception;
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static void await(Semaphore semaphore, String what) throws Exception {
        if (!semaphore.tryAcquire(30, TimeUnit.SECONDS)) {
            throw new AssertionError("timed out waiting for " + what);
        }
    }

    static ZooKeeperAdmin connect(String hosts) throws Exception {
        ZooKeeperAdmin zk = new ZooKeeperAdmin(hosts, 4000, watcher);
        await(connected, "connection");
        return zk;
    }

    static void expectError(KeeperException.Code code, Action action) throws Exception {
        try {
            action.run();
        } catch (KeeperException e) {
            if (e.code() != code) {
                throw new AssertionError("expected " + code + ", got " + e.code(), e);
            }
            System.out.println("expected error " + code);
            return;
        }
        throw new AssertionError("expected " + code + ", got success");
    }

    /** Waits until every event type in `wanted` has been seen. */
    static void awaitEvents(Set<EventType> wanted) throws Exception {
        Set<EventType> seen = EnumSet.noneOf(EventType.class);
        while (!seen.containsAll(wanted)) {
            WatchedEvent event = events.poll(30, TimeUnit.SECONDS);
            if (event == null) {
                throw new AssertionError("missing events: wanted " + wanted + ", seen " + seen);
            }
            seen.add(event.getType());
        }
    }

    static void dropConnection() throws Exception {
        System.out.println("DROP");
        System.out.flush();
        new BufferedReader(new InputStreamReader(System.in)).readLine();
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[1];
        switch (args[0]) {
            case "multi": multi(hosts); break;
            case "setwatches2": setWatches2(hosts); break;
            case "admin": admin(hosts); break;
            case "sasl": sasl(hosts); break;
            default: throw new IllegalArgumentException("unknown scenario " + args[0]);
        }
        System.out.println("done");
    }

    /** multi with every create flavour, multiRead with a failing read, a failing multi. */
    static void multi(String hosts) throws Exception {
        ZooKeeper zk = connect(hosts);
        zk.create("/jm", b("root"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        List<OpResult> ok = zk.multi(Arrays.asList(
                Op.create("/jm/plain", b("p"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.create("/jm/seq-", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL),
                Op.create("/jm/ttl", b("t"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_WITH_TTL, 60000L),
                Op.create("/jm/container", null, Ids.OPEN_ACL_UNSAFE, CreateMode.CONTAINER),
                Op.check("/jm", 0),
                Op.setData("/jm", b("root2"), 0),
                Op.delete("/jm/plain", 0)));
        System.out.println("multi " + ok.size());
        List<OpResult> reads = zk.multi(Arrays.asList(
                Op.getData("/jm"), Op.getChildren("/jm"), Op.getData("/jm/missing")));
        System.out.println("multiRead " + reads.size());
        expectError(KeeperException.Code.BADVERSION, () -> zk.multi(Arrays.asList(
                Op.create("/jm/a", b("a"), Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL),
                Op.check("/jm", 99),
                Op.delete("/jm/ttl", -1))));
        zk.close();
    }

    /** Persistent watches plus standard ones, then a reconnect: the client sends setWatches2. */
    static void setWatches2(String hosts) throws Exception {
        ZooKeeper zk = connect(hosts);
        zk.create("/jp", b("p"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create("/jp/d", b("d"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.addWatch("/jp", AddWatchMode.PERSISTENT);
        zk.addWatch("/jp/d", AddWatchMode.PERSISTENT_RECURSIVE);
        zk.exists("/jp/absent", true);
        zk.getData("/jp/d", true, null);
        zk.getChildren("/jp/d", true);
        dropConnection();
        await(disconnected, "disconnect");
        await(connected, "reconnect");
        zk.create("/jp/absent", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.setData("/jp/d", b("d2"), -1);
        zk.create("/jp/d/c", b("c"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.delete("/jp/d/c", -1);
        awaitEvents(EnumSet.of(EventType.NodeCreated, EventType.NodeDataChanged,
                EventType.NodeChildrenChanged, EventType.NodeDeleted));
        zk.close();
    }

    /** Watch removal, ephemerals, child counts, whoAmI, reconfig (disabled) and errors. */
    static void admin(String hosts) throws Exception {
        ZooKeeperAdmin zk = connect(hosts);
        zk.create("/ja", b("a"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create("/ja/e", b("e"), Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        System.out.println("ephemerals " + zk.getEphemerals("/ja") + " " + zk.getEphemerals());
        System.out.println("children " + zk.getAllChildrenNumber("/ja"));
        Watcher own = event -> events.add(event);
        zk.getData("/ja", own, null);
        zk.getChildren("/ja", own);
        zk.removeWatches("/ja", own, Watcher.WatcherType.Data, false);
        zk.removeAllWatches("/ja", Watcher.WatcherType.Any, false);
        zk.addWatch("/ja", AddWatchMode.PERSISTENT_RECURSIVE);
        zk.removeAllWatches("/ja", Watcher.WatcherType.Any, false);
        expectError(KeeperException.Code.NOCHILDRENFOREPHEMERALS,
                () -> zk.create("/ja/e/c", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT));
        expectError(KeeperException.Code.INVALIDACL,
                () -> zk.create("/ja/x", null, Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT));
        expectError(KeeperException.Code.BADVERSION,
                () -> zk.setACL("/ja", Ids.READ_ACL_UNSAFE, 7));
        System.out.println("whoami " + zk.whoAmI());
        zk.addAuthInfo("digest", b("carol:pw"));
        System.out.println("whoami " + zk.whoAmI());
        zk.create("/ja/mine", null, Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        System.out.println("acl " + zk.getACL("/ja/mine", new Stat()));
        expectError(KeeperException.Code.RECONFIGDISABLED, () -> zk.reconfigure(
                null, null, Arrays.asList("server.1=127.0.0.1:2888:3888;2181"), -1, new Stat()));
        zk.close();
    }

    /** SASL (DIGEST-MD5) login configured by the JAAS file the capture script passes. */
    static void sasl(String hosts) throws Exception {
        ZooKeeper zk = connect(hosts);
        await(saslDone, "SASL authentication");
        List<org.apache.zookeeper.data.ACL> acl = new ArrayList<>(Ids.CREATOR_ALL_ACL);
        zk.create("/js", b("s"), acl, CreateMode.PERSISTENT);
        System.out.println("whoami " + zk.whoAmI());
        System.out.println("acl " + zk.getACL("/js", new Stat()));
        zk.close();
    }
}
