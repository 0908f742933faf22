import httpx

from tests.support import images


def test_rendition_over_a_real_server(client: httpx.Client) -> None:
    response = client.get("/media/photo.jpg?w=300&h=300&fit=cover&fm=webp")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert images.decode(response.content).size == (300, 300)
