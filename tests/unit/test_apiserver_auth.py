import pytest

from agents.apiserver import auth
from agents.apiserver.errors import ApiError

pytestmark = pytest.mark.unit

ADMIN = auth.User("admin", ("system:masters", "system:authenticated"))
NODE = auth.User("system:node:n1", ("system:nodes", "system:authenticated"))
SCHED = auth.User("system:kube-scheduler", ("system:authenticated",))
ALICE = auth.User("alice", ("system:authenticated",))
ANON = auth.User(auth.ANONYMOUS, ("system:unauthenticated",))


def attrs(verb, resource="", sub="", ns="", name="", path="/api/v1/x"):
    return auth.Attributes(verb, resource, sub, ns, name, path)


def test_token_file(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text('abc,admin,1,"system:masters,ops"\nxyz,bob,2\n')
    tokens = auth.load_token_file(str(f))
    assert tokens["abc"].groups[:2] == ("system:masters", "ops")
    assert auth.user_from_token("Bearer xyz", tokens).name == "bob"
    assert auth.user_from_token("Bearer nope", tokens) is None


def test_user_from_certificate_subject():
    cert = {"subject": ((("organizationName", "system:nodes"),), (("commonName", "system:node:n1"),))}
    user = auth.user_from_cert(cert)
    assert user.name == "system:node:n1" and "system:nodes" in user.groups


def test_admin_may_do_anything_and_anonymous_only_health():
    assert auth.authorize(ADMIN, attrs("delete", "nodes", name="n2"))
    assert auth.authorize(ANON, attrs("get", path="/healthz"))
    assert not auth.authorize(ANON, attrs("get", path="/version"))
    assert not auth.authorize(ANON, attrs("list", "pods"))
    with pytest.raises(ApiError) as err:
        auth.require(ANON, attrs("list", "pods"))
    assert err.value.code == 401


def test_node_authorizer():
    assert auth.authorize(NODE, attrs("update", "nodes", "status", name="n1"))
    assert not auth.authorize(NODE, attrs("update", "nodes", "status", name="n2"))
    assert auth.authorize(NODE, attrs("list", "pods"))
    assert auth.authorize(NODE, attrs("patch", "pods", "status", "ns", "p"), pod_node="n1")
    assert not auth.authorize(NODE, attrs("patch", "pods", "status", "ns", "p"), pod_node="n2")
    assert auth.authorize(NODE, attrs("update", "leases", ns="kube-node-lease", name="n1"))
    assert not auth.authorize(NODE, attrs("update", "leases", ns="kube-node-lease", name="n2"))
    assert not auth.authorize(NODE, attrs("create", "deployments"))


def test_components_and_plain_users():
    assert auth.authorize(SCHED, attrs("create", "pods", "binding", "ns", "p"))
    assert not auth.authorize(SCHED, attrs("delete", "nodes", name="n1"))
    assert auth.authorize(ALICE, attrs("get", path="/apis"))
    with pytest.raises(ApiError) as err:
        auth.require(ALICE, attrs("list", "secrets", ns="default"))
    assert err.value.code == 403
    assert 'User "alice" cannot list resource "secrets"' in err.value.message
